package main

import (
	"github.com/urfave/cli/v2"
)

func upCommand() *cli.Command {
	return &cli.Command{
		Name:  "up",
		Usage: "apply the plan: create or change what differs, in dependency order",
		Description: "up shows the changes, asks (unless --yes), then makes them: dependencies\n" +
			"first, up to --parallel at once. Objects it creates are recorded in\n" +
			".studiorun/<script>.state.json; a declaration removed from the script is deleted.",
		ArgsUsage: "SCRIPT",
		Flags: append(append(evalFlags(), applyFlags()...),
			&cli.BoolFlag{Name: "yes", Aliases: []string{"y"}, Usage: "apply without asking"},
		),
		Action: func(c *cli.Context) error {
			plan, err := evaluate(c)
			if err != nil {
				return err
			}
			e, done, err := openEngine(c, plan)
			if err != nil {
				return err
			}
			defer done()
			ctx, stop := interruptible(c)
			defer stop()
			changes, err := e.Plan(ctx, plan)
			if err != nil {
				return err
			}
			e.Out.Changes(changes)
			if changes.Empty() {
				return nil
			}
			if err := confirm(c); err != nil {
				return err
			}
			return e.Apply(ctx, changes)
		},
	}
}
