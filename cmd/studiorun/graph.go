package main

import (
	"github.com/urfave/cli/v2"
)

func graphCommand() *cli.Command {
	return &cli.Command{
		Name:      "graph",
		Usage:     "print the plan's dependency graph in Graphviz DOT",
		ArgsUsage: "SCRIPT",
		Flags:     evalFlags(),
		Action: func(c *cli.Context) error {
			plan, err := evaluate(c)
			if err != nil {
				return err
			}
			return plan.RenderDOT(c.App.Writer)
		},
	}
}
