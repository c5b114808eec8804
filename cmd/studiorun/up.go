package main

import (
	"context"

	"github.com/urfave/cli/v2"

	"github.com/studiorun/studiorun/runtime"
	"github.com/studiorun/studiorun/runtime/apply"
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
			return withEngine(c, func(ctx context.Context, e *apply.Engine, plan *runtime.Plan) error {
				changes, err := e.Plan(ctx, plan)
				if err != nil {
					return err
				}
				return applyChanges(ctx, c, e, changes)
			})
		},
	}
}
