package ssh

import (
	"fmt"
	"regexp"
	"strings"

	"go.starlark.net/starlark"

	"github.com/studiorun/studiorun/runtime"
)

// Package is the spec of host.package: packages installed (present, or
// upgraded with latest) or removed, in one transaction of the host's
// package manager (dnf, yum or apt, from its facts).
type Package struct {
	HostTask
	Names []string `json:"names"`
	State string   `json:"state"`
}

// Kind implements runtime.Spec.
func (*Package) Kind() string { return "ssh.package" }

var packageRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9+._:@~-]*$`)

func packageTask(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var names, name starlark.Value = nil, starlark.None
	spec := Package{State: "present"}
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "names", &names, "state?", &spec.State, "name?", &name); err != nil {
		return nil, err
	}
	list, err := stringList("names", names)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", b.Name(), err)
	}
	c, err := newCall(b, name, strings.Join(list, ","))
	if err != nil {
		return nil, err
	}
	err = c.check(func() error {
		if len(list) == 0 {
			return fmt.Errorf("names is empty")
		}
		seen := map[string]bool{}
		for _, n := range list {
			if !packageRE.MatchString(n) {
				return fmt.Errorf("package name %q: want letters, digits and + . _ : @ ~ -", n)
			}
			if seen[n] {
				return fmt.Errorf("package %q is listed twice", n)
			}
			seen[n] = true
		}
		spec.Names = list
		return checkState(spec.State, "present", "absent", "latest")
	})
	if err != nil {
		return nil, err
	}
	return c.Declare(thread, &spec)
}

// Service is the spec of host.service: a systemd unit enabled or disabled
// at boot and brought to a state now. OnNotify is what a task's notify=
// does to it ("restart" when empty, or "reload").
type Service struct {
	HostTask
	Name     string `json:"name"`
	Enabled  *bool  `json:"enabled,omitempty"`
	State    string `json:"state,omitempty"`
	OnNotify string `json:"on_notify,omitempty"`
}

// Kind implements runtime.Spec.
func (*Service) Kind() string { return "ssh.service" }

// notifyAction is what a notification does to the service.
func (s *Service) notifyAction() string {
	if s.OnNotify == "" {
		return "restart"
	}
	return s.OnNotify
}

var serviceRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9@._:-]*$`)

func serviceTask(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var enabled, state, onNotify starlark.Value = starlark.None, starlark.None, starlark.None
	var spec Service
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "name", &spec.Name, "enabled?", &enabled, "state?", &state, "on_notify?", &onNotify); err != nil {
		return nil, err
	}
	c := TaskCall{Fn: b.Name(), Host: receiver(b), Identity: spec.Name}
	err := c.check(func() (err error) {
		if !serviceRE.MatchString(spec.Name) {
			return fmt.Errorf("service name %q: want a systemd unit name such as \"nfs-server\"", spec.Name)
		}
		switch e := enabled.(type) {
		case starlark.NoneType:
		case starlark.Bool:
			spec.Enabled = new(bool(e))
		default:
			return fmt.Errorf("enabled: got %s, want True, False or None", enabled.Type())
		}
		if spec.OnNotify, err = optString("on_notify", onNotify); err != nil {
			return err
		}
		if spec.OnNotify != "" && spec.OnNotify != "restart" && spec.OnNotify != "reload" {
			return fmt.Errorf("on_notify %q: want \"restart\" or \"reload\"", spec.OnNotify)
		}
		if spec.State, err = optString("state", state); err != nil {
			return err
		}
		if spec.State == "" {
			if spec.Enabled == nil {
				return fmt.Errorf("nothing to do: give enabled= or state=")
			}
			return nil
		}
		return checkState(spec.State, "started", "stopped", "restarted", "reloaded")
	})
	if err != nil {
		return nil, err
	}
	return c.Declare(thread, &spec)
}

// Mount is the spec of host.mount: a filesystem's /etc/fstab entry (one
// per mount point) and whether it is mounted now.
type Mount struct {
	HostTask
	Path    string `json:"path"`
	Source  string `json:"source"`
	Fstype  string `json:"fstype"`
	Options string `json:"options"`
	State   string `json:"state"`
}

// Kind implements runtime.Spec.
func (*Mount) Kind() string { return "ssh.mount" }

var fstypeRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._]*$`)

// CheckMountOptions checks a comma-separated list of mount options as
// fstab holds it: no blanks, no empty option.
func CheckMountOptions(options string) error {
	for _, o := range strings.Split(options, ",") {
		if o == "" || strings.ContainsAny(o, " \t\n#") {
			return fmt.Errorf("options %q: want comma-separated options without blanks, such as \"defaults\" or \"rw,noatime\"", options)
		}
	}
	return nil
}

func mountTask(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var source, fstype, name starlark.Value = starlark.None, starlark.None, starlark.None
	spec := Mount{Options: "defaults", State: "mounted"}
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "path", &spec.Path, "source?", &source, "fstype?", &fstype,
		"options?", &spec.Options, "state?", &spec.State, "name?", &name); err != nil {
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
		if spec.Source, err = optString("source", source); err != nil {
			return err
		}
		if spec.Fstype, err = optString("fstype", fstype); err != nil {
			return err
		}
		if err := checkMountSource(spec.Source, spec.Fstype); err != nil {
			return err
		}
		if err := CheckMountOptions(spec.Options); err != nil {
			return err
		}
		return checkState(spec.State, "mounted", "unmounted", "present", "absent")
	})
	if err != nil {
		return nil, err
	}
	return c.Declare(thread, &spec)
}

// checkMountSource checks that a mount says what to mount and how.
func checkMountSource(source, fstype string) error {
	var missing []string
	if source == "" {
		missing = append(missing, "source")
	}
	if fstype == "" {
		missing = append(missing, "fstype")
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing %s: a mount needs both, such as source=\"vfx-nfs-001:/srv/nfs/vfx\", fstype=\"nfs\" (nfs.mount writes NFS mounts for you)", strings.Join(missing, " and "))
	}
	if strings.ContainsAny(source, " \t\n#") {
		return fmt.Errorf("source %q contains a blank or #, which fstab cannot hold", source)
	}
	if !fstypeRE.MatchString(fstype) {
		return fmt.Errorf("fstype %q: want a filesystem type such as \"nfs\", \"xfs\" or \"tmpfs\"", fstype)
	}
	return nil
}

// Guards skip a command: when the Creates path exists, or when the Unless
// shell command succeeds. Without guards a command always reports changed.
type Guards struct {
	Creates string `json:"creates,omitempty"`
	Unless  string `json:"unless,omitempty"`
}

// guardArgs are the raw creates= and unless= arguments.
type guardArgs struct{ creates, unless starlark.Value }

func (g *guardArgs) params() []any {
	g.creates, g.unless = starlark.None, starlark.None
	return []any{"creates?", &g.creates, "unless?", &g.unless}
}

func (g *guardArgs) guards() (out Guards, err error) {
	if out.Creates, err = optPath("creates", g.creates); err != nil {
		return out, err
	}
	out.Unless, err = optString("unless", g.unless)
	return out, err
}

// Command is the spec of host.command: a program run without a shell.
type Command struct {
	HostTask
	Argv []string `json:"argv"`
	Guards
}

// Kind implements runtime.Spec.
func (*Command) Kind() string { return "ssh.command" }

// shellSyntax are the characters that mean something to a shell but that
// command, which runs no shell, would pass on as they are.
const shellSyntax = "|&;<>()$`\\\"'*?\n"

// commandArgv splits a command string on blanks, refusing shell syntax.
func commandArgv(argv []string, isString bool) ([]string, error) {
	if isString {
		if i := strings.IndexAny(argv[0], shellSyntax); i >= 0 {
			return nil, fmt.Errorf("command %q contains %q, which only a shell understands: use shell(), or a list of arguments", argv[0], argv[0][i])
		}
		argv = strings.Fields(argv[0])
	}
	if len(argv) == 0 || argv[0] == "" {
		return nil, fmt.Errorf("the command is empty")
	}
	return argv, nil
}

func commandTask(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var cmd, name starlark.Value = nil, starlark.None
	var g guardArgs
	var spec Command
	params := append([]any{"cmd", &cmd}, g.params()...)
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, append(params, "name?", &name)...); err != nil {
		return nil, err
	}
	argv, err := stringList("cmd", cmd)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", b.Name(), err)
	}
	c, err := newCall(b, name, strings.Join(argv, " "))
	if err != nil {
		return nil, err
	}
	err = c.check(func() (err error) {
		_, isString := cmd.(starlark.String)
		if spec.Argv, err = commandArgv(argv, isString); err != nil {
			return err
		}
		spec.Guards, err = g.guards()
		return err
	})
	if err != nil {
		return nil, err
	}
	return c.Declare(thread, &spec)
}

// Shell is the spec of host.shell: a script run by /bin/sh -e.
type Shell struct {
	HostTask
	Script *runtime.Text `json:"script"`
	Guards
}

// Kind implements runtime.Spec.
func (*Shell) Kind() string { return "ssh.shell" }

func shellTask(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var script, name starlark.Value = nil, starlark.None
	var g guardArgs
	var spec Shell
	params := append([]any{"script", &script}, g.params()...)
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, append(params, "name?", &name)...); err != nil {
		return nil, err
	}
	var err error
	if spec.Script, err = runtime.UnpackText("script", script); err != nil {
		return nil, fmt.Errorf("%s: %w", b.Name(), err)
	}
	natural := strings.TrimSpace(spec.Script.String())
	c, err := newCall(b, name, natural)
	if err != nil {
		return nil, err
	}
	err = c.check(func() (err error) {
		named := name != starlark.None
		switch {
		case natural == "":
			return fmt.Errorf("the script is empty")
		case !named && spec.Script.Secret():
			return fmt.Errorf("the script holds a secret: give it a name= to show in plans")
		case !named && strings.Contains(natural, "\n"):
			return fmt.Errorf("a script of several lines needs a name= to show in plans")
		}
		spec.Guards, err = g.guards()
		return err
	})
	if err != nil {
		return nil, err
	}
	return c.Declare(thread, &spec)
}
