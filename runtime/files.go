package runtime

import (
	"fmt"
	"strings"

	"go.starlark.net/starlark"
)

// callerFile is the canonical name of the file whose code called the
// running builtin; relative paths are resolved against it.
func callerFile(thread *starlark.Thread) string {
	if f := CallerPos(thread).Filename(); f != "" && f != "<builtin>" {
		return f
	}
	return thread.Name
}

// ReadProjectFile reads path as written in the calling script (//path,
// //stdlib/..., or relative to the script) and returns its canonical name
// and contents. Modules use it for arguments that name local files.
func ReadProjectFile(thread *starlark.Thread, p string) (name string, data []byte, err error) {
	name, err = resolvePath(callerFile(thread), p)
	if err != nil {
		return "", nil, err
	}
	data, err = evaluationOf(thread).readFile(name)
	return name, data, err
}

// ProjectPath resolves a path that a driver will use later (an image to
// upload) without reading it: relative paths are relative to the calling
// script, and the result is relative to the project root. Absolute paths
// are kept: they name files on the machine that applies the plan.
func ProjectPath(thread *starlark.Thread, p string) (string, error) {
	if strings.HasPrefix(p, "/") && !strings.HasPrefix(p, "//") {
		return p, nil
	}
	name, err := resolvePath(callerFile(thread), p)
	if err != nil {
		return "", err
	}
	if strings.HasPrefix(name, "//") {
		return "", fmt.Errorf("%q is in an embedded library, not a file on disk", p)
	}
	return name, nil
}

// readFileBuiltin implements read_file(path).
func readFileBuiltin(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var p string
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "path", &p); err != nil {
		return nil, err
	}
	_, data, err := ReadProjectFile(thread, p)
	if err != nil {
		return nil, fmt.Errorf("read_file: %w", err)
	}
	return starlark.String(data), nil
}

// templateBuiltin implements template(text_or_path, **values): a Go
// text/template, read from a file when the first argument is a single line
// without "{{". Values that are secrets make the result a secret whose
// display form shows "(secret)" in their place.
func templateBuiltin(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var src string
	if err := starlark.UnpackPositionalArgs(b.Name(), args, nil, 1, &src); err != nil {
		return nil, err
	}
	name := "inline"
	if !strings.Contains(src, "\n") && !strings.Contains(src, "{{") {
		n, data, err := ReadProjectFile(thread, src)
		if err != nil {
			return nil, fmt.Errorf("template: %w", err)
		}
		name, src = n, string(data)
	}
	values := make(map[string]starlark.Value, len(kwargs))
	for _, kv := range kwargs {
		values[string(kv[0].(starlark.String))] = kv[1]
	}
	text, err := RenderTemplate(name, src, values)
	if err != nil {
		return nil, err
	}
	return text.Value(), nil
}
