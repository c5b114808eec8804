package plantest

import (
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"sort"
	"strings"

	"go.starlark.net/starlark"
)

// Discover lists the golden plans (*.golden) and Starlark test files
// (*_test.star) under the given files and folders, sorted. Folders named
// "bad" (the corpus of scripts that must fail) and hidden ones are skipped.
func Discover(paths []string) ([]string, error) {
	var files []string
	for _, p := range paths {
		err := filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				if path != p && (strings.HasPrefix(d.Name(), ".") || d.Name() == "bad") {
					return filepath.SkipDir
				}
				return nil
			}
			if isTestFile(path) {
				files = append(files, path)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("find tests: %w", err)
		}
	}
	sort.Strings(files)
	return files, nil
}

func isTestFile(path string) bool {
	return strings.HasSuffix(path, ".golden") || strings.HasSuffix(path, "_test.star")
}

// Run runs every test under paths, reporting one line per golden plan and
// per test function to out, and returns the number that failed.
func Run(paths []string, modules starlark.StringDict, update bool, out io.Writer) (failed int, err error) {
	files, err := Discover(paths)
	if err != nil {
		return 0, err
	}
	if len(files) == 0 {
		return 0, fmt.Errorf("no golden plans (*.golden) or Starlark tests (*_test.star) under %s", strings.Join(paths, ", "))
	}
	for _, f := range files {
		if strings.HasSuffix(f, ".golden") {
			if err := Golden(f, modules, update); err != nil {
				failed++
				fmt.Fprintf(out, "FAIL %s\n%s\n", f, indent(err.Error()))
				continue
			}
			fmt.Fprintf(out, "ok   %s\n", f)
			continue
		}
		results, err := StarFile(f, modules)
		if err != nil {
			failed++
			fmt.Fprintf(out, "FAIL %s\n%s\n", f, indent(err.Error()))
			continue
		}
		for _, r := range results {
			if r.Err != nil {
				failed++
				fmt.Fprintf(out, "FAIL %s %s\n%s\n", f, r.Name, indent(r.Err.Error()))
				continue
			}
			fmt.Fprintf(out, "ok   %s %s\n", f, r.Name)
		}
	}
	return failed, nil
}

func indent(s string) string {
	return "    " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n    ")
}
