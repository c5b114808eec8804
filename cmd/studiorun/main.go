// Command studiorun builds images, runs VM fleets and configures hosts from
// Starlark scripts: studiorun SCRIPT VERB [flags].
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/urfave/cli/v2"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(run(os.Args, os.Stdout, os.Stderr))
}

// usageError is a mistake in the command line: exit code 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }

// run runs the CLI and returns the exit code: 0 ok, 1 error, 2 usage.
func run(args []string, stdout, stderr io.Writer) (code int) {
	defer func() {
		if r := recover(); r != nil {
			fmt.Fprintf(stderr, "studiorun: internal error: %v (please report it)\n", r)
			code = 1
		}
	}()
	app := newApp(stdout, stderr)
	var unknown string
	app.CommandNotFound = func(_ *cli.Context, name string) { unknown = name }
	err := app.Run(scriptFirst(args, app))
	if err == nil && unknown != "" {
		err = usageError{fmt.Errorf("unknown verb or missing verb after %q: want check, plan, up, down, graph, test or version", unknown)}
	}
	var usage usageError
	var exit cli.ExitCoder
	switch {
	case err == nil:
		return 0
	case errors.As(err, &usage):
		fmt.Fprintf(stderr, "studiorun: %v\nRun 'studiorun --help' for usage.\n", err)
		return 2
	case errors.As(err, &exit):
		if msg := err.Error(); msg != "" {
			fmt.Fprintf(stderr, "studiorun: %s\n", msg)
		}
		return exit.ExitCode()
	default:
		fmt.Fprintf(stderr, "studiorun: %v\n", err)
		return 1
	}
}

func newApp(stdout, stderr io.Writer) *cli.App {
	onUsage := func(_ *cli.Context, err error, _ bool) error { return usageError{err} }
	commands := []*cli.Command{
		checkCommand(), planCommand(), upCommand(), downCommand(), graphCommand(),
		testCommand(), versionCommand(),
	}
	for _, c := range commands {
		c.OnUsageError = onUsage
	}
	return &cli.App{
		Name:      "studiorun",
		Usage:     "build images, run VM fleets and configure hosts from Starlark scripts",
		UsageText: "studiorun SCRIPT VERB [flags]   (for example: studiorun scripts/studio.star up)\nstudiorun VERB [flags] SCRIPT\nstudiorun test [PATH...] [--update]",
		Commands:  commands,
		Writer:    stdout,
		ErrWriter: stderr,
		// Errors are printed once, by run, with the right exit code.
		ExitErrHandler: func(*cli.Context, error) {},
		OnUsageError:   onUsage,
		HideVersion:    true,
	}
}

// scriptFirst turns the primary form "studiorun SCRIPT VERB [flags]", and
// "studiorun VERB SCRIPT [flags]", into the form the flag parser reads,
// "studiorun VERB [flags] SCRIPT".
func scriptFirst(args []string, app *cli.App) []string {
	if len(args) < 3 || strings.HasPrefix(args[1], "-") || strings.HasPrefix(args[2], "-") {
		return args
	}
	verb, script := args[2], args[1]
	if app.Command(args[1]) != nil {
		if args[1] == "test" || !strings.HasSuffix(args[2], ".star") {
			return args
		}
		verb, script = args[1], args[2]
	} else if app.Command(args[2]) == nil {
		return args
	}
	for _, a := range args[3:] {
		if a == "--help" || a == "-h" {
			// The help of a verb takes no script: a trailing argument
			// would be read as the name of a sub-verb.
			return []string{args[0], verb, a}
		}
	}
	out := append([]string{args[0], verb}, args[3:]...)
	return append(out, script)
}
