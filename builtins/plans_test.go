package builtins

import (
	"flag"
	"strings"
	"testing"

	"github.com/studiorun/studiorun/runtime/plantest"
)

var update = flag.Bool("update", false, "rewrite golden plans that differ")

// TestPlans runs the project's golden plans and Starlark tests, as
// 'studiorun test' does: the plans of scripts/ and of each stdlib role, and
// the *_test.star files.
func TestPlans(t *testing.T) {
	var out strings.Builder
	failed, err := plantest.Run([]string{"../testdata", "../scripts"}, Modules(), *update, &out)
	if err != nil {
		t.Fatal(err)
	}
	t.Log(out.String())
	if failed > 0 {
		t.Errorf("%d plan test(s) failed:\n%s", failed, out.String())
	}
}
