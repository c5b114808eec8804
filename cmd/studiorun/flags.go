package main

import (
	"fmt"
	"os"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/studiorun/studiorun/builtins"
	"github.com/studiorun/studiorun/runtime"
)

// evalFlags are the flags of every verb that evaluates a script.
func evalFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringSliceFlag{Name: "var", Usage: "set a script var: `NAME=VALUE` (repeatable)"},
		&cli.StringFlag{Name: "var-file", Usage: "read script vars from a JSON object in `FILE`"},
		&cli.StringFlag{Name: "secret-file", Usage: "read secrets from a JSON object in `FILE` (else STUDIORUN_SECRET_<NAME>)"},
	}
}

// The defaults of --parallel: libvirt calls and image builds load this
// machine; SSH hosts mostly wait on the network.
const (
	defaultParallel     = 8
	defaultHostParallel = 16
)

// applyFlags are the flags of the verbs that talk to real systems.
func applyFlags() []cli.Flag {
	uri := os.Getenv("LIBVIRT_DEFAULT_URI")
	if uri == "" {
		uri = "qemu:///system"
	}
	return []cli.Flag{
		&cli.StringFlag{Name: "libvirt-uri", Value: uri, Usage: "libvirt connection `URI` (env LIBVIRT_DEFAULT_URI)"},
		&cli.IntFlag{Name: "parallel", Value: defaultParallel, DefaultText: fmt.Sprintf("%d, and %d SSH hosts", defaultParallel, defaultHostParallel),
			Usage: "apply at most `N` resources at once, and configure at most N SSH hosts at once"},
		&cli.BoolFlag{Name: "json", Usage: "stream one JSON event per line"},
		&cli.BoolFlag{Name: "diff", Usage: "show the unified diff of every file whose content changes"},
		&cli.BoolFlag{Name: "accept-new-host-keys", Usage: "trust and record SSH host keys not yet in known_hosts"},
		&cli.StringFlag{Name: "known-hosts", Usage: "SSH known hosts `FILE` (default ~/.ssh/known_hosts)"},
		&cli.DurationFlag{Name: "connect-timeout", Value: 2 * time.Minute, Usage: "how long a host may take to accept SSH (guests still booting)"},
		&cli.BoolFlag{Name: "force", Usage: "rebuild images whose inputs are unchanged"},
		&cli.StringSliceFlag{Name: "limit", Usage: "configure only these `HOST`s or inventory groups (repeatable)"},
	}
}

// scriptArg returns the one script argument of a verb.
func scriptArg(c *cli.Context) (string, error) {
	if c.NArg() != 1 {
		return "", usageError{fmt.Errorf("%s: want one script, as in 'studiorun scripts/studio.star %s'", c.Command.Name, c.Command.Name)}
	}
	return c.Args().First(), nil
}

// evaluate evaluates the verb's script with the evaluation flags.
func evaluate(c *cli.Context) (*runtime.Plan, error) {
	script, err := scriptArg(c)
	if err != nil {
		return nil, err
	}
	secrets := runtime.Secrets{Getenv: os.LookupEnv}
	if f := c.String("secret-file"); f != "" {
		if secrets.File, err = runtime.ReadSecretFile(f); err != nil {
			return nil, err
		}
	}
	return runtime.Eval(runtime.Options{
		Script:  script,
		Vars:    c.StringSlice("var"),
		VarFile: c.String("var-file"),
		Secrets: secrets,
		Modules: builtins.Modules(),
		Stderr:  c.App.ErrWriter,
	})
}
