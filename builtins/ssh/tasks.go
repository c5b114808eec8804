package ssh

import (
	"fmt"
	"path"
	"regexp"
	"strings"

	"go.starlark.net/starlark"

	"github.com/studiorun/studiorun/runtime"
)

// Task is implemented by the spec of every task run on an ssh.host. A spec
// becomes a task by embedding HostTask first, which TaskCall.Declare fills.
type Task interface {
	runtime.Spec
	// TaskHost returns the address of the ssh.host the task runs on.
	TaskHost() runtime.Address
	setHost(host runtime.Address, buildVM bool)
}

// HostTask is embedded first in the spec of every task: the host it runs
// on, shown as the "host" attribute.
type HostTask struct {
	Host runtime.Address `json:"host"`
	// buildVM marks the tasks of an image's build VM: the image build
	// applies them, not the engine's host runs.
	buildVM bool
}

// TaskHost implements Task.
func (t *HostTask) TaskHost() runtime.Address { return t.Host }

// BoundHost implements apply.HostBound: a task fails with its host. The
// tasks of a build VM are not bound: the image build applies them.
func (t *HostTask) BoundHost(runtime.Address) runtime.Address {
	if t.buildVM {
		return ""
	}
	return t.Host
}

func (t *HostTask) setHost(a runtime.Address, buildVM bool) { t.Host, t.buildVM = a, buildVM }

// TaskCall is a task being declared on a host: the builtin (fn, such as
// "ssh.copy"), the host, and the task's identity on that host (a user name,
// a path, ...). Its task's address is "<fn>.<host>:<identity>", for example
// ssh.copy.vfx-dev-001:/etc/sudoers.d/ops.
type TaskCall struct {
	Fn       string
	Host     *Host
	Identity string
	renamed  bool // the task takes name= (a host method other than user, group, service)
}

// Errorf returns an error that names the task, as in
// `ssh.copy "vfx-dev-001:/etc/sudoers.d/ops": mode 600 is decimal (...)`.
func (c TaskCall) Errorf(format string, args ...any) error {
	return fmt.Errorf("%s %q: %s", c.Fn, c.name(), fmt.Sprintf(format, args...))
}

func (c TaskCall) name() string { return c.Host.res.Name + ":" + c.Identity }

// newCall starts the declaration of a task by the method b: its identity
// is name= when given, else the natural one.
func newCall(b *starlark.Builtin, name starlark.Value, natural string) (TaskCall, error) {
	c := TaskCall{Fn: b.Name(), Host: receiver(b), Identity: natural, renamed: true}
	n, err := optString("name", name)
	switch {
	case err != nil:
		return c, c.Errorf("%v", err)
	case strings.ContainsAny(n, "\n\x00"):
		return c, c.Errorf("name %q contains a newline or NUL", n)
	case n != "":
		c.Identity = n
	}
	return c, nil
}

// check runs the validation of a task's arguments and reports its error
// under the task's name.
func (c TaskCall) check(validate func() error) error {
	if err := validate(); err != nil {
		return c.Errorf("%v", err)
	}
	return nil
}

const lastTaskKey = "ssh.last_task"

// Declare declares the task with the given spec and returns a reference to
// it. The task depends on its host and on the task declared before it on
// the same host, so that a host's tasks run in the order of the script.
func (c TaskCall) Declare(thread *starlark.Thread, spec Task) (starlark.Value, error) {
	b, err := runtime.BuilderOf(thread, c.Fn)
	if err != nil {
		return nil, err
	}
	if c.Identity == "" {
		return nil, c.Errorf("the task's name is empty")
	}
	if prev := b.Resource(runtime.Address(spec.Kind() + "." + c.name())); prev != nil {
		hint := ""
		if c.renamed {
			hint = "; pass name= to tell the two tasks apart"
		}
		return nil, c.Errorf("already declared at %s%s", prev.Pos, hint)
	}
	host := c.Host.res.Address
	hs, _ := c.Host.res.Spec.(*HostSpec)
	spec.setHost(host, hs != nil && hs.BuildOf != "")
	last := b.Local(lastTaskKey, func() any { return map[runtime.Address]runtime.Address{} }).(map[runtime.Address]runtime.Address)
	r, err := runtime.Declare(thread, c.Fn, c.name(), spec, host, last[host])
	if err != nil {
		return nil, err
	}
	last[host] = r.Address
	return runtime.NewRef(r), nil
}

// CheckPath checks that p is an absolute, clean path on a host.
func CheckPath(p string) error {
	switch {
	case p == "":
		return fmt.Errorf("path is empty")
	case !strings.HasPrefix(p, "/"):
		return fmt.Errorf("path %q is not absolute: paths on a host start with /", p)
	case strings.ContainsAny(p, "\n\x00"):
		return fmt.Errorf("path %q contains a newline or NUL", p)
	case path.Clean(p) != p:
		return fmt.Errorf("path %q is not clean: did you mean %q?", p, path.Clean(p))
	}
	return nil
}

var accountRE = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`)

// checkAccount checks a user or group name (what says which) as useradd
// and groupadd accept it by default.
func checkAccount(what, name string) error {
	if !accountRE.MatchString(name) {
		return fmt.Errorf("%s %q is not a valid name: want 1 to 32 lower-case letters, digits, _ or -, starting with a letter or _", what, name)
	}
	return nil
}

// ansibleStates are the states that Ansible accepts and studiorun spells
// differently.
var ansibleStates = map[string]string{"installed": "present", "removed": "absent"}

// checkState checks that state is one of the allowed values.
func checkState(state string, allowed ...string) error {
	for _, a := range allowed {
		if state == a {
			return nil
		}
	}
	quoted := make([]string, len(allowed))
	for i, a := range allowed {
		quoted[i] = fmt.Sprintf("%q", a)
	}
	hint := ""
	if alt := ansibleStates[state]; alt != "" {
		hint = fmt.Sprintf(" (Ansible's %q is %q here)", state, alt)
	}
	last := len(quoted) - 1
	return fmt.Errorf("state %q: want %s or %s%s", state, strings.Join(quoted[:last], ", "), quoted[last], hint)
}

// optString unpacks an optional string argument: None gives "".
func optString(what string, v starlark.Value) (string, error) {
	if v == nil || v == starlark.None {
		return "", nil
	}
	s, ok := v.(starlark.String)
	if !ok {
		return "", fmt.Errorf("%s: got %s, want a string", what, v.Type())
	}
	return string(s), nil
}

// optPath unpacks an optional absolute path on the host.
func optPath(what string, v starlark.Value) (string, error) {
	p, err := optString(what, v)
	if err != nil || p == "" {
		return p, err
	}
	if err := CheckPath(p); err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	return p, nil
}

// optMode unpacks an optional file mode: None gives nil.
func optMode(v starlark.Value) (*runtime.Mode, error) {
	if v == nil || v == starlark.None {
		return nil, nil
	}
	var m runtime.Mode
	if err := m.Unpack(v); err != nil {
		return nil, err
	}
	return &m, nil
}

// stringList unpacks a string or a list of strings (what names the argument).
func stringList(what string, v starlark.Value) ([]string, error) {
	if s, ok := v.(starlark.String); ok {
		return []string{string(s)}, nil
	}
	seq, ok := v.(starlark.Indexable)
	if !ok || v.Type() == "string" {
		return nil, fmt.Errorf("%s: got %s, want a string or a list of strings", what, v.Type())
	}
	out := make([]string, seq.Len())
	for i := range out {
		s, ok := seq.Index(i).(starlark.String)
		if !ok {
			return nil, fmt.Errorf("%s[%d]: got %s, want a string", what, i, seq.Index(i).Type())
		}
		out[i] = string(s)
	}
	return out, nil
}
