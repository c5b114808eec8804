package builtins

import (
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/studiorun/studiorun/runtime"
)

var (
	fuzzDirOnce sync.Once
	fuzzDir     string
)

// FuzzEval evaluates arbitrary scripts, seeded with the bad-input corpus
// and the project's scripts: evaluation must return a plan or an error,
// never panic or run unbounded.
func FuzzEval(f *testing.F) {
	seeds, _ := filepath.Glob("../testdata/bad/*.star")
	more, _ := filepath.Glob("../scripts/*.star")
	for _, file := range append(seeds, more...) {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		fuzzDirOnce.Do(func() {
			dir, err := os.MkdirTemp("", "studiorun-fuzz-")
			if err != nil {
				panic(err)
			}
			if err := os.Mkdir(filepath.Join(dir, ".studiorun"), 0o755); err != nil {
				panic(err)
			}
			fuzzDir = dir
		})
		script := filepath.Join(fuzzDir, "main.star")
		if err := os.WriteFile(script, src, 0o644); err != nil {
			t.Fatal(err)
		}
		plan, err := runtime.Eval(runtime.Options{
			Script:   script,
			Secrets:  runtime.TestSecrets{},
			Modules:  Modules(),
			MaxSteps: 1 << 20,
		})
		if err == nil {
			if err := plan.RenderText(discard{}); err != nil {
				t.Fatalf("render: %v", err)
			}
		}
	})
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
