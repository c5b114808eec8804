package libvirt

import (
	"fmt"
	"net/url"

	"go.starlark.net/starlark"

	"github.com/studiorun/studiorun/runtime"
)

// Hypervisor is the value of libvirt.hypervisor(uri, name=None): a libvirt
// host that resources are placed on with on = hv. It is a value, not a
// resource: there is nothing to create or read, so it adds no line to the
// plan; each resource placed on it records its URI in its "on" attribute.
type Hypervisor struct {
	uri, name string
}

// String implements starlark.Value.
func (h *Hypervisor) String() string {
	return fmt.Sprintf("libvirt.hypervisor(%q, name = %q)", h.uri, h.name)
}

// Type implements starlark.Value.
func (*Hypervisor) Type() string { return "libvirt.hypervisor" }

// Freeze implements starlark.Value.
func (*Hypervisor) Freeze() {}

// Truth implements starlark.Value.
func (*Hypervisor) Truth() starlark.Bool { return true }

// Hash implements starlark.Value: a hypervisor is its URI.
func (h *Hypervisor) Hash() (uint32, error) { return starlark.String(h.uri).Hash() }

// Attr implements starlark.HasAttrs.
func (h *Hypervisor) Attr(name string) (starlark.Value, error) {
	switch name {
	case "uri":
		return starlark.String(h.uri), nil
	case "name":
		return starlark.String(h.name), nil
	}
	return nil, nil
}

// AttrNames implements starlark.HasAttrs.
func (*Hypervisor) AttrNames() []string { return []string{"name", "uri"} }

// URI returns the hypervisor's libvirt URI.
func (h *Hypervisor) URI() string { return h.uri }

// hypervisorPaths are the paths each scheme's driver accepts.
var hypervisorPaths = map[string][]string{
	"qemu":     {"/system", "/session"},
	"qemu+ssh": {"/system", "/session"},
	"qemu+tcp": {"/system", "/session"},
	"qemu+tls": {"/system", "/session"},
	"test":     {"/default"},
}

// hypervisor implements libvirt.hypervisor.
func hypervisor(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var uri string
	var name starlark.Value = starlark.None
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "uri", &uri, "name?", &name); err != nil {
		return nil, err
	}
	host, err := checkHypervisorURI(uri)
	if err != nil {
		return nil, fmt.Errorf("%s: uri %q: %w", b.Name(), uri, err)
	}
	h := &Hypervisor{uri: uri, name: host}
	if host == "" {
		h.name = "local"
	}
	if name != starlark.None {
		s, ok := starlark.AsString(name)
		if !ok || s == "" {
			return nil, fmt.Errorf("%s: name: got %s, want a non-empty string such as \"hv2\"", b.Name(), name)
		}
		h.name = s
	}
	return h, nil
}

// hypervisorExamples are a URI of each scheme, for errors.
var hypervisorExamples = map[string]string{
	"qemu":     "qemu:///system",
	"qemu+ssh": "qemu+ssh://ops@hv2/system",
	"qemu+tcp": "qemu+tcp://hv2/system",
	"qemu+tls": "qemu+tls://hv2/system",
	"test":     "test:///default",
}

// checkHypervisorURI refuses a URI that the driver cannot connect to and
// returns its host ("" for a local hypervisor).
func checkHypervisorURI(uri string) (host string, err error) {
	u, err := url.Parse(uri)
	if err != nil || u.Opaque != "" || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf(`want a libvirt URI such as "qemu:///system", "qemu+ssh://ops@hv2/system" or "test:///default"`)
	}
	paths, ok := hypervisorPaths[u.Scheme]
	if !ok {
		return "", fmt.Errorf(`scheme %q: want qemu, qemu+ssh, qemu+tcp, qemu+tls or test, as in "qemu+ssh://ops@hv2/system"`, u.Scheme)
	}
	example := hypervisorExamples[u.Scheme]
	okPath := false
	for _, p := range paths {
		okPath = okPath || u.Path == p
	}
	if !okPath {
		return "", fmt.Errorf("path %q: want %s, as in %q", u.Path, quoteList(paths), example)
	}
	remote := u.Scheme != "qemu" && u.Scheme != "test"
	switch {
	case remote && u.Hostname() == "":
		return "", fmt.Errorf("%s needs a host, as in %q", u.Scheme, example)
	case !remote && u.Host != "":
		return "", fmt.Errorf("%s is local and takes no host (%q): use qemu+ssh, qemu+tcp or qemu+tls for a remote host, as in \"qemu+ssh://ops@hv2/system\"", u.Scheme, u.Host)
	}
	return u.Hostname(), nil
}

// unpackOn reads the on argument of a constructor: "" (None, the default
// hypervisor: the CLI's --libvirt-uri) or a libvirt.hypervisor's URI.
func unpackOn(where string, v starlark.Value) (string, error) {
	switch v := v.(type) {
	case starlark.NoneType:
		return "", nil
	case *Hypervisor:
		return v.uri, nil
	}
	return "", fmt.Errorf("%s: on: got %s, want a libvirt.hypervisor: hv2 = libvirt.hypervisor(\"qemu+ssh://ops@hv2/system\"), then on = hv2", where, v.Type())
}

// HypervisorOf returns the URI of the hypervisor that a libvirt spec is
// placed on, "" for the default hypervisor (and for other kinds).
func HypervisorOf(spec runtime.Spec) string {
	switch s := spec.(type) {
	case *Pool:
		return s.On
	case *ExistingPool:
		return s.On
	case *Volume:
		return s.On
	case *ExistingVolume:
		return s.On
	case *Network:
		return s.On
	case *ExistingNetwork:
		return s.On
	case *Domain:
		return s.On
	}
	return ""
}

// describeOn names a placement in an error.
func describeOn(uri string) string {
	if uri == "" {
		return "the default hypervisor (--libvirt-uri)"
	}
	return fmt.Sprintf("hypervisor %s", uri)
}

// checkSameHypervisor refuses a reference (what: "pool", "base", "disk",
// "NIC network") to a resource on another hypervisor than on, the
// placement of the resource that where names.
func checkSameHypervisor(where, what string, ref *runtime.Resource, on string) error {
	if refOn := HypervisorOf(ref.Spec); refOn != on {
		return fmt.Errorf("%s: %s %s is on %s, but this one is on %s: libvirt objects can only use objects of their own hypervisor; pass the same on = to both",
			where, what, ref.Address, describeOn(refOn), describeOn(on))
	}
	return nil
}

// checkRedeclared refuses a second resource at the same address on
// another hypervisor with a message that says why, before runtime.Declare
// refuses it with the plain one.
func checkRedeclared(thread *starlark.Thread, fn, kind, name, on string) error {
	bld, err := runtime.BuilderOf(thread, fn)
	if err != nil {
		return err
	}
	prev := bld.Resource(runtime.Address(kind + "." + name))
	if prev == nil {
		return nil
	}
	if prevOn := HypervisorOf(prev.Spec); prevOn != on {
		return fmt.Errorf("%s: %s is already declared at %s on %s: addresses are unique plan-wide, so names must differ across hypervisors (this one is on %s)",
			fn, prev.Address, prev.Pos, describeOn(prevOn), describeOn(on))
	}
	return nil
}

// onNamespace scopes a uniqueness namespace (libvirt names, paths,
// bridges) to one hypervisor: two hosts may each have a pool "studio".
func onNamespace(namespace, on string) string {
	if on == "" {
		return namespace
	}
	return namespace + " on " + on
}
