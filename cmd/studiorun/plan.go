package main

import (
	"context"

	"github.com/urfave/cli/v2"

	"github.com/studiorun/studiorun/runtime"
	"github.com/studiorun/studiorun/runtime/apply"
)

func planCommand() *cli.Command {
	return &cli.Command{
		Name:  "plan",
		Usage: "show what the script declares (--offline) or what applying it would change",
		Description: "With --offline, plan evaluates the script and renders the plan without contacting\n" +
			"any system: text for people, --json for tools and golden files. Without it, plan\n" +
			"reads the real objects and shows what up would change, changing nothing.",
		ArgsUsage: "SCRIPT",
		Flags: append(append(evalFlags(), applyFlags()...),
			&cli.BoolFlag{Name: "offline", Usage: "render the evaluated plan only; contact no system"},
			&cli.BoolFlag{Name: "detailed-exitcode", Usage: "exit 0 without changes, 2 with changes, 1 on error"},
		),
		Action: func(c *cli.Context) error {
			if c.Bool("offline") {
				plan, err := evaluate(c)
				if err != nil {
					return err
				}
				if c.Bool("json") {
					return plan.RenderJSON(c.App.Writer)
				}
				return plan.RenderText(c.App.Writer)
			}
			return withEngine(c, func(ctx context.Context, e *apply.Engine, plan *runtime.Plan) error {
				changes, err := e.Plan(ctx, plan)
				if err != nil {
					return err
				}
				e.Out.Changes(changes)
				if err := changes.Failed(); err != nil {
					return err
				}
				if c.Bool("detailed-exitcode") && !changes.Empty() {
					return cli.Exit("", 2)
				}
				return nil
			})
		},
	}
}
