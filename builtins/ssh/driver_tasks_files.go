package ssh

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/studiorun/studiorun/runtime/apply"
)

func decideFile(t *File, f *HostFacts, p Probe) (*Decision, error) {
	own, err := resolveOwnership(t.Ownership, f)
	if err != nil {
		return nil, err
	}
	fs := p.file()
	switch t.State {
	case "absent":
		if !fs.Exists {
			return noop(t.Path + " is absent"), nil
		}
		d := &Decision{}
		d.attr("state", p["type"], "absent")
		d.Script.Cmd("rm", "-rf", "--", t.Path)
		return d, nil
	case "directory":
		if fs.Exists && !fs.IsDir {
			return nil, fmt.Errorf("%s exists and is a %s, not a directory", t.Path, p["type"])
		}
		if !fs.Exists {
			d := &Decision{Action: apply.Create, Attrs: []apply.AttrChange{{Name: "state", New: "directory"}}}
			d.Script.Cmd("mkdir", "-p", "--", t.Path)
			ownershipDiff(d, t.Path, own, fs, true)
			return d, nil
		}
	case "touch":
		if !fs.Exists {
			d := &Decision{Action: apply.Create, Attrs: []apply.AttrChange{{Name: "state", New: "file"}}}
			d.Script.Cmd("touch", "--", t.Path)
			ownershipDiff(d, t.Path, own, fs, true)
			return d, nil
		}
	case "file":
		if !fs.Exists {
			d := &Decision{Action: apply.Create, Pending: fmt.Sprintf("%s does not exist: state \"file\" changes an existing file (use \"touch\", copy or template to create it)", t.Path)}
			d.Attrs = append(d.Attrs, apply.AttrChange{Name: "state", New: "file", Note: "does not exist yet"})
			ownershipDiff(d, t.Path, own, fs, true)
			return d, nil
		}
		if fs.IsDir {
			return nil, fmt.Errorf("%s is a directory, not a file", t.Path)
		}
	}
	d := noop(t.Path + " is as declared")
	ownershipDiff(d, t.Path, own, fs, true)
	return d, nil
}

// decideWrite decides copy and template: a whole file's content and its
// ownership.
func decideWrite(path string, data []byte, secret bool, w Write, f *HostFacts, p Probe) (*Decision, error) {
	own, err := resolveOwnership(w.Ownership, f)
	if err != nil {
		return nil, err
	}
	fs := p.file()
	if fs.IsDir {
		return nil, fmt.Errorf("%s is a directory: give the file's path", path)
	}
	d := noop(path + " is as declared")
	d.secret = secret
	if !fs.Exists || p["sha256"] != sha256Hex(data) {
		if !fs.Exists {
			d.Action = apply.Create
		}
		if !p.Has("parent") {
			d.Script.Cmd("mkdir", "-p", "--", parentDir(path))
		}
		d.change(contentChange(path, p, string(data), secret))
		d.Stdin = data
		d.Script.Append(writeFileScript(path, own, w.Validate, w.Backup && fs.Exists))
		// Ownership changes are part of the write; show them.
		var shown Decision
		ownershipDiff(&shown, path, own, fs, false)
		d.Attrs = append(d.Attrs, shown.Attrs...)
		return d, nil
	}
	ownershipDiff(d, path, own, fs, true)
	return d, nil
}

// contentChange is the change of a file's content, or a line saying it
// changed when the content is secret or was not read.
func contentChange(path string, p Probe, want string, secret bool) apply.AttrChange {
	if secret {
		return apply.AttrChange{Name: "content", Note: "(secret content changed)"}
	}
	old, ok, err := p.Content("content")
	if err != nil || (!ok && p.file().Exists) {
		return apply.AttrChange{Name: "content", Note: fmt.Sprintf("content changed (sha256 %s)", sha256Hex([]byte(want)))}
	}
	return ContentChange("content", path, old, want)
}

func decideUpload(t *Upload, f *HostFacts, p Probe) (*Decision, error) {
	own, err := resolveOwnership(t.Ownership, f)
	if err != nil {
		return nil, err
	}
	fs := p.file()
	if fs.IsDir {
		return nil, fmt.Errorf("%s is a directory: give the file's path", t.Dest)
	}
	sum, size, err := sha256File(t.Src)
	if err != nil {
		d := &Decision{Action: apply.Create, Pending: fmt.Sprintf("read %s: %v", t.Src, err)}
		d.Attrs = append(d.Attrs, apply.AttrChange{Name: "src", New: t.Src, Note: "does not exist yet"})
		return d, nil
	}
	d := noop(t.Dest + " has the content of " + t.Src)
	if !fs.Exists || p["sha256"] != sum {
		if !fs.Exists {
			d.Action = apply.Create
		}
		d.attr("sha256", p["sha256"], sum)
		d.Attrs[len(d.Attrs)-1].Note = fmt.Sprintf("%d bytes from %s", size, t.Src)
		d.Upload = &UploadFile{Src: t.Src, Dest: t.Dest, MakeDir: !p.Has("parent")}
		d.Script.Append(uploadScript(t.Dest, own, d.Upload.MakeDir))
		var shown Decision
		ownershipDiff(&shown, t.Dest, own, fs, false)
		d.Attrs = append(d.Attrs, shown.Attrs...)
		return d, nil
	}
	ownershipDiff(d, t.Dest, own, fs, true)
	return d, nil
}

// splitLines splits a file's content into lines (without their newline).
func splitLines(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(strings.TrimSuffix(s, "\n"), "\n")
}

func joinLines(lines []string) string {
	if len(lines) == 0 {
		return ""
	}
	return strings.Join(lines, "\n") + "\n"
}

// EditLines returns a file's content with line_in_file's edit made.
func EditLines(t *LineInFile, old string) (string, error) {
	lines := splitLines(old)
	var re *regexp.Regexp
	if t.Regexp != "" {
		var err error
		if re, err = regexp.Compile(t.Regexp); err != nil {
			return "", err
		}
	}
	if t.State == "absent" {
		var out []string
		for _, l := range lines {
			if (t.Line != "" && l == t.Line) || (re != nil && re.MatchString(l)) {
				continue
			}
			out = append(out, l)
		}
		if len(out) == len(lines) {
			return old, nil
		}
		return joinLines(out), nil
	}
	if re != nil {
		last := -1
		for i, l := range lines {
			if re.MatchString(l) {
				last = i
			}
		}
		if last >= 0 {
			if lines[last] == t.Line {
				return old, nil
			}
			lines[last] = t.Line
			return joinLines(lines), nil
		}
	}
	for _, l := range lines {
		if l == t.Line {
			return old, nil
		}
	}
	at := len(lines)
	switch {
	case t.InsertBefore == "BOF":
		at = 0
	case t.InsertAfter != "" && t.InsertAfter != "EOF":
		ra := regexp.MustCompile(t.InsertAfter)
		for i, l := range lines {
			if ra.MatchString(l) {
				at = i + 1
			}
		}
	case t.InsertBefore != "":
		rb := regexp.MustCompile(t.InsertBefore)
		for i, l := range lines {
			if rb.MatchString(l) {
				at = i
			}
		}
	}
	lines = append(lines[:at], append([]string{t.Line}, lines[at:]...)...)
	return joinLines(lines), nil
}

func decideLineInFile(t *LineInFile, p Probe) (*Decision, error) {
	fs, err := editableFile(t.Path, p)
	if err != nil {
		return nil, err
	}
	if !fs.Exists {
		switch {
		case t.State == "absent":
			return noop(t.Path + " does not exist"), nil
		case !t.Create:
			d := &Decision{Action: apply.Update, Pending: fmt.Sprintf("%s does not exist (create=True creates it)", t.Path)}
			d.Attrs = append(d.Attrs, apply.AttrChange{Name: "line", New: t.Line, Note: "the file does not exist yet"})
			return d, nil
		}
	}
	return decideEdit(t.Path, p, fs, func(old string) (string, error) { return EditLines(t, old) }, " has the line as declared")
}

// editableFile checks that the probed path is a regular file (or absent)
// small enough to edit in place.
func editableFile(path string, p Probe) (fileState, error) {
	fs := p.file()
	if fs.Exists && !fs.IsFile {
		return fs, fmt.Errorf("%s is a %s, not a file", path, p["type"])
	}
	if p.Has("content_too_large") {
		return fs, fmt.Errorf("%s is larger than 256 KiB", path)
	}
	return fs, nil
}

// decideEdit decides a change of a file's lines: the probed content,
// edited, written back atomically when it differs (with a unified diff).
// ok says why nothing changes, after the path.
func decideEdit(path string, p Probe, fs fileState, edit func(old string) (string, error), ok string) (*Decision, error) {
	old, _, err := p.Content("content")
	if err != nil {
		return nil, err
	}
	want, err := edit(old)
	if err != nil {
		return nil, err
	}
	if fs.Exists && want == old {
		return noop(path + ok), nil
	}
	d := &Decision{Action: apply.Update}
	if !fs.Exists {
		d.Action = apply.Create
	}
	d.change(ContentChange("content", path, old, want))
	d.Stdin = []byte(want)
	d.Script.Append(writeFileScript(path, resolvedOwnership{}, "", false))
	return d, nil
}

// KeyedLine is a step (not a Starlark task) that keeps exactly one line
// for a key in a file, such as the /etc/exports line of a directory: the
// line whose Field-th blank-separated field is Key is Line, other lines
// for the key are removed. A missing file is created with mode 0644.
type KeyedLine struct {
	HostTask
	Path  string `json:"path"`
	Field int    `json:"field"`
	Key   string `json:"key"`
	Line  string `json:"line"`
}

// Kind implements runtime.Spec.
func (*KeyedLine) Kind() string { return "ssh.keyed_line" }

func decideKeyedLine(t *KeyedLine, p Probe) (*Decision, error) {
	fs, err := editableFile(t.Path, p)
	if err != nil {
		return nil, err
	}
	return decideEdit(t.Path, p, fs, func(old string) (string, error) { return EditKeyed(old, t.Field, t.Key, t.Line), nil }, " has the line for "+t.Key)
}
