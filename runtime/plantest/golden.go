// Package plantest runs the tests users write for their scripts: golden
// plans (a plan's JSON, recorded with the script and vars that produce it)
// and Starlark test files (*_test.star with test_* functions).
package plantest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"go.starlark.net/starlark"

	"github.com/studiorun/studiorun/runtime"
)

// goldenHeader is the part of a golden plan that says how to make it.
type goldenHeader struct {
	Script string         `json:"script"`
	Vars   map[string]any `json:"vars"`
}

// Golden evaluates the script that a golden plan names, with its vars, and
// compares the JSON plan byte for byte. With update it rewrites the file.
// Secrets are stand-ins (runtime.TestSecrets): plans never show them.
func Golden(file string, modules starlark.StringDict, update bool) error {
	want, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	var h goldenHeader
	dec := json.NewDecoder(bytes.NewReader(want))
	dec.UseNumber()
	if err := dec.Decode(&h); err != nil || h.Script == "" {
		return fmt.Errorf("%s: not a golden plan: want the JSON of `studiorun SCRIPT plan --offline --json`, with its \"script\"", file)
	}
	abs, err := filepath.Abs(file)
	if err != nil {
		return err
	}
	root := runtime.ProjectRoot(filepath.Dir(abs))
	plan, err := runtime.Eval(runtime.Options{
		Script:    filepath.Join(root, filepath.FromSlash(h.Script)),
		VarValues: h.Vars,
		Secrets:   runtime.TestSecrets{},
		Modules:   modules,
	})
	if err != nil {
		return fmt.Errorf("%s: evaluate %s: %w", file, h.Script, err)
	}
	var got bytes.Buffer
	if err := plan.RenderJSON(&got); err != nil {
		return err
	}
	if bytes.Equal(got.Bytes(), want) {
		return nil
	}
	if update {
		return os.WriteFile(file, got.Bytes(), 0o644)
	}
	return fmt.Errorf("%s: plan differs from the golden file (rewrite it with --update and read the diff):\n%s", file, firstDifference(want, got.Bytes()))
}

// firstDifference shows the first line where two texts differ, with a
// little context.
func firstDifference(want, got []byte) string {
	w := strings.Split(string(want), "\n")
	g := strings.Split(string(got), "\n")
	for i := 0; i < max(len(w), len(g)); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			return fmt.Sprintf("line %d:\n- %s\n+ %s", i+1, wl, gl)
		}
	}
	return "(same lines, different bytes)"
}
