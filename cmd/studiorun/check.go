package main

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"
)

func checkCommand() *cli.Command {
	return &cli.Command{
		Name:      "check",
		Usage:     "evaluate a script and validate its declarations",
		ArgsUsage: "SCRIPT",
		Flags:     evalFlags(),
		Action: func(c *cli.Context) error {
			plan, err := evaluate(c)
			if err != nil {
				return err
			}
			counts := map[string]int{}
			for _, r := range plan.Resources {
				counts[r.Module()]++
			}
			var parts []string
			for _, m := range plan.Modules() {
				parts = append(parts, fmt.Sprintf("%s %d", m, counts[m]))
			}
			summary := "no resources"
			if len(parts) > 0 {
				summary = fmt.Sprintf("%d resources (%s)", len(plan.Resources), strings.Join(parts, ", "))
			}
			fmt.Fprintf(c.App.Writer, "%s: ok, %s\n", plan.Script, summary)
			return nil
		},
	}
}
