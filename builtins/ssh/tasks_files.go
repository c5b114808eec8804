package ssh

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"

	"go.starlark.net/starlark"

	"github.com/studiorun/studiorun/runtime"
)

// Ownership is the mode, owner and group a task gives a file; empty fields
// are left as they are (or as the host creates them).
type Ownership struct {
	Mode  *runtime.Mode `json:"mode,omitempty"`
	Owner string        `json:"owner,omitempty"`
	Group Group         `json:"group,omitempty"`
}

// ownershipArgs are the raw mode=, owner= and group= arguments.
type ownershipArgs struct{ mode, owner, group starlark.Value }

func (o *ownershipArgs) params() []any {
	o.mode, o.owner, o.group = starlark.None, starlark.None, starlark.None
	return []any{"mode?", &o.mode, "owner?", &o.owner, "group?", &o.group}
}

func (o *ownershipArgs) isSet() bool {
	return o.mode != starlark.None || o.owner != starlark.None || o.group != starlark.None
}

func (c TaskCall) ownership(o *ownershipArgs) (own Ownership, err error) {
	if own.Mode, err = optMode(o.mode); err != nil {
		return own, err
	}
	if own.Owner, err = optString("owner", o.owner); err != nil {
		return own, err
	}
	if own.Owner != "" {
		if err := checkAccount("owner", own.Owner); err != nil {
			return own, err
		}
	}
	own.Group, err = c.optGroup("group", o.group)
	return own, err
}

// OwnershipArgs are the optional mode=, owner= and group= arguments of a
// task of another module that makes a directory or file (the directory of
// nfs.export), checked as host.file checks its own.
type OwnershipArgs struct{ args ownershipArgs }

// Params returns mode=, owner= and group= for starlark.UnpackArgs.
func (o *OwnershipArgs) Params() []any { return o.args.params() }

// Ownership checks the arguments o and returns what they ask for.
func (c TaskCall) Ownership(o *OwnershipArgs) (Ownership, error) { return c.ownership(&o.args) }

// File is the spec of host.file: a regular file that must exist, a
// directory (created with its parents), an absent path, or a touched file.
type File struct {
	HostTask
	Path  string `json:"path"`
	State string `json:"state"`
	Ownership
}

// Kind implements runtime.Spec.
func (*File) Kind() string { return "ssh.file" }

func fileTask(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var name starlark.Value = starlark.None
	var own ownershipArgs
	spec := File{State: "file"}
	params := append([]any{"path", &spec.Path, "state?", &spec.State}, own.params()...)
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, append(params, "name?", &name)...); err != nil {
		return nil, err
	}
	c, err := newCall(b, name, spec.Path)
	if err != nil {
		return nil, err
	}
	err = c.check(func() (err error) {
		if err := CheckPath(spec.Path); err != nil {
			return err
		}
		if err := checkState(spec.State, "file", "directory", "absent", "touch"); err != nil {
			return err
		}
		if spec.State == "absent" && own.isSet() {
			return fmt.Errorf("mode, owner and group have no meaning with state \"absent\"")
		}
		spec.Ownership, err = c.ownership(&own)
		return err
	})
	if err != nil {
		return nil, err
	}
	return c.Declare(thread, &spec)
}

// writeArgs are the raw arguments of the tasks that write a file.
type writeArgs struct {
	ownershipArgs
	validate starlark.Value
	backup   bool
}

func (w *writeArgs) params() []any {
	w.validate = starlark.None
	return append(w.ownershipArgs.params(), "validate?", &w.validate, "backup?", &w.backup)
}

// Write is how copy and template write a file: its ownership, the
// command that checks the temporary file before it replaces the file, and
// whether the previous content is kept.
type Write struct {
	Ownership
	Validate string `json:"validate,omitempty"`
	Backup   bool   `json:"backup"`
}

// write reads the arguments of a file write. A validate= command runs on
// the temporary file, whose path replaces %s.
func (c TaskCall) write(w *writeArgs) (out Write, err error) {
	if out.Ownership, err = c.ownership(&w.ownershipArgs); err != nil {
		return out, err
	}
	out.Backup = w.backup
	if out.Validate, err = optString("validate", w.validate); err != nil {
		return out, err
	}
	if out.Validate != "" && !strings.Contains(out.Validate, "%s") {
		return out, fmt.Errorf("validate %q has no %%s: it stands for the temporary file to check, as in \"visudo -cf %%s\"", out.Validate)
	}
	return out, nil
}

// Copy is the spec of host.copy: a file's whole content, from content= (shown
// in plans unless secret) or from a project file src= (recorded with its
// sha256). The file is written atomically; Validate runs on the temporary
// file first; Backup keeps the previous content.
type Copy struct {
	HostTask
	Dest    string        `json:"dest"`
	Content *runtime.Text `json:"content,omitempty"`
	Src     string        `json:"src,omitempty"`
	SHA256  string        `json:"sha256,omitempty"`
	Write
	data []byte
}

// Kind implements runtime.Spec.
func (*Copy) Kind() string { return "ssh.copy" }

// Data returns the bytes to write.
func (s *Copy) Data() []byte {
	if s.Content != nil {
		return []byte(s.Content.Reveal())
	}
	return s.data
}

func copyTask(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var content, src, name starlark.Value = starlark.None, starlark.None, starlark.None
	var w writeArgs
	var spec Copy
	params := append([]any{"dest", &spec.Dest, "content?", &content, "src?", &src}, w.params()...)
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, append(params, "name?", &name)...); err != nil {
		return nil, err
	}
	c, err := newCall(b, name, spec.Dest)
	if err != nil {
		return nil, err
	}
	err = c.check(func() (err error) {
		if err := CheckPath(spec.Dest); err != nil {
			return err
		}
		switch {
		case content == starlark.None && src == starlark.None:
			return fmt.Errorf("give content= or src=")
		case content != starlark.None && src != starlark.None:
			return fmt.Errorf("give content= or src=, not both")
		case content != starlark.None:
			if spec.Content, err = runtime.UnpackText("content", content); err != nil {
				return err
			}
		default:
			p, err := optString("src", src)
			if err != nil {
				return err
			}
			if spec.Src, spec.data, err = runtime.ReadProjectFile(thread, p); err != nil {
				return fmt.Errorf("src: %w", err)
			}
			sum := sha256.Sum256(spec.data)
			spec.SHA256 = hex.EncodeToString(sum[:])
		}
		spec.Write, err = c.write(&w)
		return err
	})
	if err != nil {
		return nil, err
	}
	return c.Declare(thread, &spec)
}

// Template is the spec of host.template: a file rendered at evaluation from
// the Go text/template src with values, written as copy writes it. Content
// shows "(secret)" in place of each secret value.
type Template struct {
	HostTask
	Dest    string        `json:"dest"`
	Src     string        `json:"src"`
	Content *runtime.Text `json:"content"`
	Write
}

// Kind implements runtime.Spec.
func (*Template) Kind() string { return "ssh.template" }

func templateTask(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var name starlark.Value = starlark.None
	values := new(starlark.Dict)
	var w writeArgs
	var spec Template
	var src string
	params := append([]any{"dest", &spec.Dest, "src", &src, "values?", &values}, w.params()...)
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, append(params, "name?", &name)...); err != nil {
		return nil, err
	}
	c, err := newCall(b, name, spec.Dest)
	if err != nil {
		return nil, err
	}
	err = c.check(func() (err error) {
		if err := CheckPath(spec.Dest); err != nil {
			return err
		}
		var text []byte
		if spec.Src, text, err = runtime.ReadProjectFile(thread, src); err != nil {
			return fmt.Errorf("src: %w", err)
		}
		vals := make(map[string]starlark.Value, values.Len())
		for _, item := range values.Items() {
			k, ok := item[0].(starlark.String)
			if !ok {
				return fmt.Errorf("values: key %s is not a string", item[0])
			}
			vals[string(k)] = item[1]
		}
		if spec.Content, err = runtime.RenderTemplate(spec.Src, string(text), vals); err != nil {
			return err
		}
		spec.Write, err = c.write(&w)
		return err
	})
	if err != nil {
		return nil, err
	}
	return c.Declare(thread, &spec)
}

// LineInFile is the spec of host.line_in_file: one line of a file present
// (replacing the last line that Regexp matches, else inserted after or
// before the last line matching InsertAfter/InsertBefore, else appended)
// or absent (every line equal to Line or matching Regexp removed).
// Expressions are Go regular expressions; "BOF" and "EOF" stand for the
// beginning and end of the file.
type LineInFile struct {
	HostTask
	Path         string `json:"path"`
	Line         string `json:"line,omitempty"`
	Regexp       string `json:"regexp,omitempty"`
	State        string `json:"state"`
	InsertAfter  string `json:"insert_after,omitempty"`
	InsertBefore string `json:"insert_before,omitempty"`
	Create       bool   `json:"create"`
}

// Kind implements runtime.Spec.
func (*LineInFile) Kind() string { return "ssh.line_in_file" }

func lineInFileTask(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var line, re, after, before, name starlark.Value = starlark.None, starlark.None, starlark.None, starlark.None, starlark.None
	spec := LineInFile{State: "present"}
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "path", &spec.Path, "line?", &line, "regexp?", &re,
		"state?", &spec.State, "insert_after?", &after, "insert_before?", &before, "create?", &spec.Create, "name?", &name); err != nil {
		return nil, err
	}
	c, err := newCall(b, name, spec.Path)
	if err != nil {
		return nil, err
	}
	err = c.check(func() (err error) {
		if err := CheckPath(spec.Path); err != nil {
			return err
		}
		if err := checkState(spec.State, "present", "absent"); err != nil {
			return err
		}
		for _, a := range []struct {
			what string
			v    starlark.Value
			dst  *string
		}{{"line", line, &spec.Line}, {"regexp", re, &spec.Regexp}, {"insert_after", after, &spec.InsertAfter}, {"insert_before", before, &spec.InsertBefore}} {
			if *a.dst, err = optString(a.what, a.v); err != nil {
				return err
			}
			if a.what != "line" && *a.dst != "" && *a.dst != "BOF" && *a.dst != "EOF" {
				if _, err := regexp.Compile(*a.dst); err != nil {
					return fmt.Errorf("%s %q is not a valid regular expression: %v", a.what, *a.dst, err)
				}
			}
		}
		return checkLineArgs(&spec)
	})
	if err != nil {
		return nil, err
	}
	return c.Declare(thread, &spec)
}

// checkLineArgs checks that line_in_file's arguments make sense together.
func checkLineArgs(s *LineInFile) error {
	switch {
	case strings.ContainsAny(s.Line, "\r\n"):
		return fmt.Errorf("line contains a line break: line_in_file manages a single line; use copy or template for more")
	case s.State == "present" && s.Line == "":
		return fmt.Errorf("state \"present\" needs line=")
	case s.State == "absent" && s.Line == "" && s.Regexp == "":
		return fmt.Errorf("state \"absent\" needs line= or regexp=")
	case s.State == "absent" && (s.InsertAfter != "" || s.InsertBefore != "" || s.Create):
		return fmt.Errorf("insert_after, insert_before and create have no meaning with state \"absent\"")
	case s.InsertAfter != "" && s.InsertBefore != "":
		return fmt.Errorf("give insert_after= or insert_before=, not both")
	}
	return nil
}

// Upload is the spec of host.upload: a file of the machine that applies the
// plan (a path from the project root, or absolute), copied as it is then
// (not read at evaluation: it may be large or built by an earlier step).
type Upload struct {
	HostTask
	Src  string `json:"src"`
	Dest string `json:"dest"`
	Ownership
}

// Kind implements runtime.Spec.
func (*Upload) Kind() string { return "ssh.upload" }

func uploadTask(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var name starlark.Value = starlark.None
	var own ownershipArgs
	var spec Upload
	var src string
	params := append([]any{"src", &src, "dest", &spec.Dest}, own.params()...)
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, append(params, "name?", &name)...); err != nil {
		return nil, err
	}
	c, err := newCall(b, name, spec.Dest)
	if err != nil {
		return nil, err
	}
	err = c.check(func() (err error) {
		if err := CheckPath(spec.Dest); err != nil {
			return err
		}
		if spec.Src, err = runtime.ProjectPath(thread, src); err != nil {
			return fmt.Errorf("src: %w", err)
		}
		spec.Ownership, err = c.ownership(&own)
		return err
	})
	if err != nil {
		return nil, err
	}
	return c.Declare(thread, &spec)
}
