package main

import (
	"github.com/urfave/cli/v2"
)

func downCommand() *cli.Command {
	return &cli.Command{
		Name:      "down",
		Usage:     "delete what the script created, and nothing else",
		ArgsUsage: "SCRIPT",
		Flags: append(append(evalFlags(), applyFlags()...),
			&cli.BoolFlag{Name: "yes", Aliases: []string{"y"}, Usage: "delete without asking"},
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
