package runtime

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"go.starlark.net/starlark"

	"github.com/studiorun/studiorun/kickstart"
	"github.com/studiorun/studiorun/stdlib"
)

// embedded are the libraries built into the binary, reached as //<name>/...
// in load(), read_file() and template().
var embedded = map[string]fs.FS{
	"stdlib":    stdlib.FS,
	"kickstart": kickstart.FS,
}

// ProjectRoot returns the project root of a script in dir: the nearest
// ancestor (dir included) holding a .git or .studiorun entry, else dir.
func ProjectRoot(dir string) string {
	for d := dir; ; {
		for _, marker := range []string{".git", ".studiorun"} {
			if _, err := os.Stat(filepath.Join(d, marker)); err == nil {
				return d
			}
		}
		parent := filepath.Dir(d)
		if parent == d {
			return dir
		}
		d = parent
	}
}

// resolvePath turns a path written in the script from (a canonical name) into
// a canonical name: "//stdlib/roles/ops_user.star" for an embedded file,
// "scripts/studio.star" (relative to the project root) for a project file.
func resolvePath(from, p string) (string, error) {
	switch {
	case p == "":
		return "", errors.New("empty path")
	case strings.HasPrefix(p, "//"):
		rest := path.Clean(p[2:])
		if lib, _, _ := strings.Cut(rest, "/"); embedded[lib] != nil {
			return "//" + rest, nil
		}
		return inProject(p, rest)
	case path.IsAbs(p) || filepath.IsAbs(p):
		return "", fmt.Errorf("%q is an absolute path: scripts read only files in the project; write //path from the project root or a path relative to %s", p, from)
	case strings.HasPrefix(from, "//"):
		lib, _, _ := strings.Cut(from[2:], "/")
		joined := path.Join(path.Dir(from[2:]), p)
		if joined != lib && !strings.HasPrefix(joined, lib+"/") {
			return "", fmt.Errorf("%q leaves the embedded //%s library", p, lib)
		}
		return "//" + joined, nil
	default:
		return inProject(p, path.Join(path.Dir(from), p))
	}
}

func inProject(written, clean string) (string, error) {
	if clean == ".." || strings.HasPrefix(clean, "../") {
		return "", fmt.Errorf("%q is outside the project root", written)
	}
	return clean, nil
}

// readFile reads a canonical name, from the embedded libraries or from the
// project (refusing symbolic links that lead out of it).
func (ev *evaluation) readFile(name string) ([]byte, error) {
	if strings.HasPrefix(name, "//") {
		lib, rest, _ := strings.Cut(name[2:], "/")
		data, err := fs.ReadFile(embedded[lib], rest)
		if err != nil {
			return nil, fmt.Errorf("%s: no such file in the embedded //%s library", name, lib)
		}
		return data, nil
	}
	full := filepath.Join(ev.root, filepath.FromSlash(name))
	real, err := filepath.EvalSymlinks(full)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s: no such file in the project", name)
		}
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if rel, err := filepath.Rel(ev.realRoot, real); err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return nil, fmt.Errorf("%s is a link to a file outside the project root", name)
	}
	data, err := os.ReadFile(real)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	return data, nil
}

type loadEntry struct {
	globals starlark.StringDict
	err     error
}

// load implements load(): each file runs once per evaluation, on a thread of
// its own that has no plan builder.
func (ev *evaluation) load(thread *starlark.Thread, module string) (starlark.StringDict, error) {
	from := thread.Name
	name, err := resolvePath(from, module)
	if err != nil {
		return nil, err
	}
	for i, loading := range ev.loading {
		if loading == name {
			cycle := append(append([]string(nil), ev.loading[i:]...), name)
			return nil, fmt.Errorf("load cycle: %s", strings.Join(cycle, " -> "))
		}
	}
	if e, ok := ev.loaded[name]; ok {
		return e.globals, e.err
	}
	src, err := ev.readFile(name)
	if err != nil {
		return nil, err
	}
	ev.loading = append(ev.loading, name)
	globals, err := ev.exec(ev.newThread(name), name, src)
	ev.loading = ev.loading[:len(ev.loading)-1]
	ev.loaded[name] = &loadEntry{globals, err}
	return globals, err
}
