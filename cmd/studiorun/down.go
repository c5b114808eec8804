package main

import (
	"github.com/urfave/cli/v2"
)

func downCommand() *cli.Command {
	return &cli.Command{
		Name:  "down",
		Usage: "delete what the script created, and nothing else",
		Description: "down deletes the objects that .studiorun/<script>.state.json records as\n" +
			"created by this script, dependents first. Objects with the same names that\n" +
			"studiorun did not create are never touched.",
		ArgsUsage: "SCRIPT",
		Flags: append(append(evalFlags(), applyFlags()...),
			&cli.BoolFlag{Name: "yes", Aliases: []string{"y"}, Usage: "delete without asking"},
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
			changes, err := e.PlanDestroy()
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
