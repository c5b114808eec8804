package ssh

import (
	"fmt"
	"net/netip"
	"regexp"
	"sort"
	"strings"

	"go.starlark.net/starlark"

	"github.com/studiorun/studiorun/runtime"
)

// HostSpec is the spec of ssh.host: how to reach a host over SSH.
type HostSpec struct {
	Address        string          `json:"address"`
	Port           int             `json:"port"`
	User           string          `json:"user"`
	Key            string          `json:"key,omitempty"` // a private key file, as written (~ is expanded when applied)
	Password       *runtime.Secret `json:"password,omitempty"`
	Become         bool            `json:"become"`
	BecomePassword *runtime.Secret `json:"become_password,omitempty"`
	// BuildOf names the qemu.image whose build VM this host is; its address
	// and port may then be left empty and 0, known once the VM runs.
	BuildOf runtime.Address `json:"build_of,omitempty"`
}

// Kind implements runtime.Spec.
func (*HostSpec) Kind() string { return "ssh.host" }

// BoundHost implements apply.HostBound: a host is bound to itself, but for
// an image's build VM, which the image build configures.
func (s *HostSpec) BoundHost(self runtime.Address) runtime.Address {
	if s.BuildOf != "" {
		return ""
	}
	return self
}

var hostnameRE = regexp.MustCompile(`^(?i)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$`)

// CheckAddress checks that s is an IP address or a DNS host name.
func CheckAddress(s string) error {
	if _, err := netip.ParseAddr(s); err == nil {
		return nil
	}
	if len(s) > 253 || !hostnameRE.MatchString(s) {
		return fmt.Errorf("address %q: want an IP address or a host name such as \"vfx-dev-001.studio\"", s)
	}
	return nil
}

// check validates the spec of host name.
func (s *HostSpec) check(name string) error {
	if !runtime.ValidName(name) {
		return fmt.Errorf("name %q: %s", name, runtime.NameRule)
	}
	building := s.BuildOf != ""
	if !(building && s.Address == "") {
		if err := CheckAddress(s.Address); err != nil {
			return err
		}
	}
	if (s.Port < 1 || s.Port > 65535) && !(building && s.Port == 0) {
		return fmt.Errorf("port %d: want 1 to 65535", s.Port)
	}
	if err := checkAccount("user", s.User); err != nil {
		return err
	}
	switch {
	case strings.Contains(s.Key, "PRIVATE KEY"):
		return fmt.Errorf("key: pass the path of the private key file, not the key itself")
	case strings.HasSuffix(s.Key, ".pub"):
		return fmt.Errorf("key %q is a public key: pass the private key file (without .pub)", s.Key)
	case s.BecomePassword != nil && !s.Become:
		return fmt.Errorf("become_password is set but become is False")
	}
	return nil
}

// DeclareHost declares an ssh.host (fn is the builtin asking, for errors)
// and returns its host value, whose methods declare tasks. The qemu image
// builder declares its build VM's host this way and hands it to the
// image's provision function.
func DeclareHost(thread *starlark.Thread, fn, name string, spec *HostSpec, deps ...runtime.Address) (starlark.Value, error) {
	if err := spec.check(name); err != nil {
		return nil, fmt.Errorf("%s %q: %w", fn, name, err)
	}
	r, err := runtime.Declare(thread, fn, name, spec, deps...)
	if err != nil {
		return nil, err
	}
	return &Host{res: r}, nil
}

// hostBuiltin implements ssh.host.
func hostBuiltin(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var name string
	var key, password, becomePassword starlark.Value = starlark.None, starlark.None, starlark.None
	spec := HostSpec{Port: 22, User: "root"}
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "name", &name, "address", &spec.Address,
		"port?", &spec.Port, "user?", &spec.User, "key?", &key, "password?", &password,
		"become?", &spec.Become, "become_password?", &becomePassword); err != nil {
		return nil, err
	}
	var err error
	if spec.Key, err = optString("key", key); err != nil {
		return nil, fmt.Errorf("%s %q: %w", b.Name(), name, err)
	}
	if spec.Password, err = unpackSecret("password", password); err != nil {
		return nil, fmt.Errorf("%s %q: %w", b.Name(), name, err)
	}
	if spec.BecomePassword, err = unpackSecret("become_password", becomePassword); err != nil {
		return nil, fmt.Errorf("%s %q: %w", b.Name(), name, err)
	}
	return DeclareHost(thread, b.Name(), name, &spec)
}

// unpackSecret unpacks an optional secret() argument.
func unpackSecret(what string, v starlark.Value) (*runtime.Secret, error) {
	switch v := v.(type) {
	case starlark.NoneType:
		return nil, nil
	case runtime.Secret:
		return &v, nil
	case starlark.String:
		return nil, fmt.Errorf("%s is a plain string: use secret(\"name\") so that it never shows in plans, logs or files", what)
	}
	return nil, fmt.Errorf("%s: got %s, want secret(\"name\")", what, v.Type())
}

// Host is the Starlark value of an ssh.host: a reference to the host
// resource whose methods (user, copy, package, ...) declare tasks on it.
type Host struct{ res *runtime.Resource }

var (
	_ runtime.Referent  = (*Host)(nil)
	_ starlark.HasAttrs = (*Host)(nil)
)

// Resource implements runtime.Referent.
func (h *Host) Resource() *runtime.Resource { return h.res }

// Spec returns the host's connection settings.
func (h *Host) Spec() *HostSpec { return h.res.Spec.(*HostSpec) }

// String returns the address.
func (h *Host) String() string { return string(h.res.Address) }

// Type returns "ssh.host".
func (h *Host) Type() string { return "ssh.host" }

// Freeze does nothing: a host value is immutable.
func (h *Host) Freeze() {}

// Truth is always true.
func (h *Host) Truth() starlark.Bool { return true }

// Hash hashes the address.
func (h *Host) Hash() (uint32, error) { return starlark.String(h.res.Address).Hash() }

// Attr returns the reference attributes (address, kind, name), facts, or a
// task method bound to the host.
func (h *Host) Attr(name string) (starlark.Value, error) {
	if name == "facts" {
		return &Facts{host: h.res.Address}, nil
	}
	if m, ok := taskMethods[name]; ok {
		return starlark.NewBuiltin("ssh."+name, withNotify(m)).BindReceiver(h), nil
	}
	return runtime.RefAttr(h.res, name)
}

// AttrNames lists the attributes and methods.
func (h *Host) AttrNames() []string {
	names := append(runtime.RefAttrNames(), "facts")
	for m := range taskMethods {
		names = append(names, m)
	}
	sort.Strings(names)
	return names
}

// UnpackHost returns the host value v, which must be one (what names the
// argument in the error).
func UnpackHost(fn, what string, v starlark.Value) (*Host, error) {
	if h, ok := v.(*Host); ok {
		return h, nil
	}
	if r, ok := v.(runtime.Referent); ok {
		return nil, fmt.Errorf("%s: %s: got %s, want an ssh.host", fn, what, r.Resource().Address)
	}
	return nil, fmt.Errorf("%s: %s: got %s, want an ssh.host (the value ssh.host() returns)", fn, what, v.Type())
}

// receiver returns the host that a task method is bound to.
func receiver(b *starlark.Builtin) *Host { return b.Receiver().(*Host) }

// factNames are the facts gathered from each host when the plan is applied;
// the value says what they may stand for in task arguments.
var factNames = map[string]string{
	"admin_group":     "group", // wheel on EL, sudo on Debian
	"os_family":       "",      // "el" or "debian"
	"package_manager": "",      // dnf, yum or apt
}

// Facts is the value of host.facts: the host's facts, known only when the
// plan is applied.
type Facts struct{ host runtime.Address }

var _ starlark.HasAttrs = (*Facts)(nil)

// String returns "<host>.facts".
func (f *Facts) String() string { return string(f.host) + ".facts" }

// Type returns "ssh.facts".
func (f *Facts) Type() string { return "ssh.facts" }

// Freeze does nothing: facts are immutable.
func (f *Facts) Freeze() {}

// Truth is always true.
func (f *Facts) Truth() starlark.Bool { return true }

// Hash fails: facts are not dictionary keys.
func (f *Facts) Hash() (uint32, error) { return 0, fmt.Errorf("unhashable type: ssh.facts") }

// Attr returns a fact.
func (f *Facts) Attr(name string) (starlark.Value, error) {
	if _, ok := factNames[name]; ok {
		return Fact{host: f.host, name: name}, nil
	}
	return nil, nil
}

// AttrNames lists the facts.
func (f *Facts) AttrNames() []string {
	names := make([]string, 0, len(factNames))
	for n := range factNames {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Fact is one of a host's facts, such as host.facts.admin_group: a value
// known only when the plan is applied, which some task arguments accept.
// Plans show it as "${facts.admin_group}".
type Fact struct {
	host runtime.Address
	name string
}

// String returns "${facts.<name>}".
func (f Fact) String() string { return "${facts." + f.name + "}" }

// Type returns "ssh.fact".
func (f Fact) Type() string { return "ssh.fact" }

// Freeze does nothing: a fact is immutable.
func (f Fact) Freeze() {}

// Truth is always true.
func (f Fact) Truth() starlark.Bool { return true }

// Hash hashes the display form.
func (f Fact) Hash() (uint32, error) { return starlark.String(f.String()).Hash() }

// Group is a group name, or "${facts.<name>}" for a fact that names a
// group on the host when the plan is applied.
type Group string

// IsFact reports whether the group is a fact, resolved when applied.
func (g Group) IsFact() bool { return strings.HasPrefix(string(g), "${facts.") }

// unpackGroup accepts a group name or a group fact of the task's host.
func (c TaskCall) unpackGroup(what string, v starlark.Value) (Group, error) {
	switch v := v.(type) {
	case starlark.String:
		return Group(v), checkAccount(what, string(v))
	case Fact:
		if factNames[v.name] != "group" {
			return "", fmt.Errorf("%s: host.facts.%s is not a group name; of the facts, only admin_group is", what, v.name)
		}
		if v.host != c.Host.res.Address {
			return "", fmt.Errorf("%s: the facts of %s, not of %s: a fact is resolved on its own host", what, v.host.Name(), c.Host.res.Name)
		}
		return Group(v.String()), nil
	}
	return "", fmt.Errorf("%s: got %s, want a group name or host.facts.admin_group", what, v.Type())
}

// optGroup unpacks an optional group: None gives "".
func (c TaskCall) optGroup(what string, v starlark.Value) (Group, error) {
	if v == nil || v == starlark.None {
		return "", nil
	}
	return c.unpackGroup(what, v)
}
