package main

import (
	"github.com/urfave/cli/v2"
)

func upCommand() *cli.Command {
	return &cli.Command{
		Name:      "up",
		Usage:     "apply the plan: create or change what differs, in dependency order",
		ArgsUsage: "SCRIPT",
		Flags: append(append(evalFlags(), applyFlags()...),
			&cli.BoolFlag{Name: "yes", Aliases: []string{"y"}, Usage: "apply without asking"},
		),
		Action: func(c *cli.Context) error {
			plan, err := evaluate(c)
			if err != nil {
				return err
			}
			return requireDrivers(c, plan)
		},
	}
}
