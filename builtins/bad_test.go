package builtins

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/studiorun/studiorun/runtime"
)

// badCase is a script of testdata/bad/ that must fail. Its header comments
// say how: "# want: <the error's first line, file:line:col included>", and
// optionally "# var: name=value" and "# secret: name=value" lines.
type badCase struct {
	file    string
	want    string
	vars    []string
	secrets map[string]string
}

func readBadCase(t testing.TB, file string) badCase {
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	c := badCase{file: file, secrets: map[string]string{}}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "# want: "):
			c.want = strings.TrimPrefix(line, "# want: ")
		case strings.HasPrefix(line, "# var: "):
			c.vars = append(c.vars, strings.TrimPrefix(line, "# var: "))
		case strings.HasPrefix(line, "# secret: "):
			k, v, _ := strings.Cut(strings.TrimPrefix(line, "# secret: "), "=")
			c.secrets[k] = v
		}
	}
	if c.want == "" {
		t.Fatalf("%s: no '# want: ' line", file)
	}
	return c
}

func badCases(t testing.TB) []string {
	files, err := filepath.Glob("../testdata/bad/*.star")
	if err != nil {
		t.Fatal(err)
	}
	var entries []string
	for _, f := range files {
		// Files loaded by other cases (lib_*.star) are not cases themselves.
		if !strings.HasPrefix(filepath.Base(f), "lib_") {
			entries = append(entries, f)
		}
	}
	return entries
}

// TestBadScripts pins, for every script of the bad-input corpus, the exact
// error message and its file:line:col.
func TestBadScripts(t *testing.T) {
	files := badCases(t)
	if len(files) < 40 {
		t.Errorf("the bad-input corpus has %d cases, want at least 40", len(files))
	}
	for _, f := range files {
		c := readBadCase(t, f)
		t.Run(strings.TrimSuffix(filepath.Base(f), ".star"), func(t *testing.T) {
			_, err := runtime.Eval(runtime.Options{
				Script:  c.file,
				Vars:    c.vars,
				Secrets: runtime.Secrets{File: c.secrets},
				Modules: Modules(),
			})
			if err == nil {
				t.Fatalf("evaluation succeeded, want error %q", c.want)
			}
			got, _, _ := strings.Cut(err.Error(), "\n")
			if got != c.want {
				t.Errorf("error:\n got: %s\nwant: %s", got, c.want)
			}
		})
	}
}
