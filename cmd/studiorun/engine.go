package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/studiorun/studiorun/builtins"
	"github.com/studiorun/studiorun/builtins/ssh"
	"github.com/studiorun/studiorun/runtime"
	"github.com/studiorun/studiorun/runtime/apply"
)

// openEngine locks the script's state and sets up its drivers; done
// releases both.
func openEngine(c *cli.Context, plan *runtime.Plan) (e *apply.Engine, done func(), err error) {
	parallel, hosts := c.Int("parallel"), defaultHostParallel
	if c.IsSet("parallel") {
		if parallel < 1 {
			return nil, nil, usageError{fmt.Errorf("--parallel %d: want at least 1", parallel)}
		}
		hosts = parallel
	}
	state, err := apply.OpenState(plan.Root, plan.Script)
	if err != nil {
		return nil, nil, err
	}
	out := apply.NewOutput(c.App.Writer, c.Bool("json"))
	if c.Bool("diff") {
		out.ShowDiffs()
	}

	router := builtins.NewRouter(builtins.DriverOptions{
		LibvirtURI: c.String("libvirt-uri"),
		Root:       plan.Root,
		SSH: ssh.Options{
			KnownHosts:        c.String("known-hosts"),
			AcceptNewHostKeys: c.Bool("accept-new-host-keys"),
			ConnectTimeout:    c.Duration("connect-timeout"),
			Out:               out,
		},
		ForceImages: c.Bool("force"),
	})
	e = &apply.Engine{
		Router:       router,
		State:        state,
		Parallel:     parallel,
		HostParallel: hosts,
		Out:          out,
	}
	return e, func() {
		router.Close()
		state.Close()
	}, nil
}

// withEngine evaluates the verb's script, opens its engine and runs fn
// with a context that Ctrl-C or SIGTERM cancels (the engine then starts
// nothing new and finishes what is running).
func withEngine(c *cli.Context, fn func(ctx context.Context, e *apply.Engine, plan *runtime.Plan) error) error {
	plan, err := evaluate(c)
	if err != nil {
		return err
	}
	if plan, err = ssh.Limit(plan, c.StringSlice("limit")); err != nil {
		return usageError{err}
	}
	e, done, err := openEngine(c, plan)
	if err != nil {
		return err
	}
	defer done()
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	return fn(ctx, e, plan)
}

// applyChanges shows the changes and, when there are some, asks and
// applies them.
func applyChanges(ctx context.Context, c *cli.Context, e *apply.Engine, changes *apply.Changes) error {
	e.Out.Changes(changes)
	if changes.Empty() {
		if changes.Reportable() {
			return e.Apply(ctx, changes) // nothing changes: no need to ask
		}
		return nil
	}
	if err := confirm(c); err != nil {
		return err
	}
	return e.Apply(ctx, changes)
}

// confirm asks before a verb changes anything, unless --yes. Without a
// terminal to ask on, it is an error rather than a hang.
func confirm(c *cli.Context) error {
	if c.Bool("yes") {
		return nil
	}
	if fi, err := os.Stdin.Stat(); err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		return usageError{fmt.Errorf("%s: standard input is not a terminal to ask on: pass --yes to go ahead without asking", c.Command.Name)}
	}
	fmt.Fprintf(c.App.Writer, "\nDo you want to %s these changes? Only 'yes' goes ahead: ", c.Command.Name)
	answer, _ := bufio.NewReader(os.Stdin).ReadString('\n')
	if strings.TrimSpace(answer) != "yes" {
		return cli.Exit("cancelled: nothing was changed", 1)
	}
	return nil
}
