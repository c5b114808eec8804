package main

import (
	"context"

	"github.com/urfave/cli/v2"

	"github.com/studiorun/studiorun/runtime"
	"github.com/studiorun/studiorun/runtime/apply"
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
			return withEngine(c, func(ctx context.Context, e *apply.Engine, _ *runtime.Plan) error {
				changes, err := e.PlanDestroy()
				if err != nil {
					return err
				}
				return applyChanges(ctx, c, e, changes)
			})
		},
	}
}
