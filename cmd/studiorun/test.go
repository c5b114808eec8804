package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/studiorun/studiorun/builtins"
	"github.com/studiorun/studiorun/runtime/plantest"
)

func testCommand() *cli.Command {
	return &cli.Command{
		Name:  "test",
		Usage: "run golden plans (*.golden) and Starlark tests (*_test.star)",
		Description: "A golden plan is the output of 'studiorun SCRIPT plan --offline --json' saved\n" +
			"as a .golden file: test evaluates its script with its vars again and compares\n" +
			"byte for byte; --update rewrites the files that differ. A *_test.star file\n" +
			"holds test_* functions that assert over plans (see the README).",
		ArgsUsage: "[PATH...]",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "update", Usage: "rewrite golden plans that differ"},
		},
		Action: func(c *cli.Context) error {
			paths := c.Args().Slice()
			if len(paths) == 0 {
				paths = []string{"."}
			}
			failed, err := plantest.Run(paths, builtins.Modules(), c.Bool("update"), c.App.Writer)
			if err != nil {
				return err
			}
			if failed > 0 {
				return cli.Exit(fmt.Sprintf("%d test(s) failed", failed), 1)
			}
			return nil
		},
	}
}
