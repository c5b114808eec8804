package builtins

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/studiorun/studiorun/runtime"
	"github.com/studiorun/studiorun/runtime/apply"
)

// evalScript evaluates a script in a fresh project.
func evalScript(t *testing.T, script string) *runtime.Plan {
	t.Helper()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, ".studiorun"), 0o755); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "main.star")
	if err := os.WriteFile(file, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := runtime.Eval(runtime.Options{Script: file, Modules: Modules()})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

const twoHostsScript = `
hv2 = libvirt.hypervisor("qemu+ssh://ops@hv2/system")
local_pool = libvirt.pool("local", path = "/srv/local")
remote_pool = libvirt.pool("remote", path = "/srv/remote", on = hv2)
local_net = libvirt.network("local", subnet = "172.16.0.0/24")
remote_net = libvirt.network("remote", subnet = "172.17.0.0/24", on = hv2)
dhcp.reservation(local_net, mac = dhcp.laa(1), ip = "172.16.0.11", hostname = "a")
dhcp.reservation(remote_net, mac = dhcp.laa(2), ip = "172.17.0.12", hostname = "b")
`

// TestRouterPlacesEachResourceOnItsHypervisor checks the routing without
// connecting: one driver per URI, the default from --libvirt-uri, a
// reservation on its network's hypervisor, and a deletion on the
// hypervisor its entry records.
func TestRouterPlacesEachResourceOnItsHypervisor(t *testing.T) {
	p := evalScript(t, twoHostsScript)
	rt := NewRouter(DriverOptions{LibvirtURI: "qemu:///system", Root: t.TempDir()})
	defer rt.Close()
	var h *hypervisors
	for _, r := range p.Resources {
		attrs, err := r.Attributes()
		if err != nil {
			t.Fatal(err)
		}
		d, err := rt.Route(r.Kind(), attrs)
		if err != nil {
			t.Fatal(err)
		}
		hd, ok := d.(*hypervisors)
		if !ok {
			t.Fatalf("%s routed to %T, want the libvirt hypervisors", r.Address, d)
		}
		if h != nil && hd != h {
			t.Fatalf("%s: a second libvirt router driver", r.Address)
		}
		h = hd
	}
	h.SetPlan(p)
	for addr, want := range map[runtime.Address]string{
		"libvirt.pool.local":     "qemu:///system",
		"libvirt.pool.remote":    "qemu+ssh://ops@hv2/system",
		"libvirt.network.local":  "qemu:///system",
		"libvirt.network.remote": "qemu+ssh://ops@hv2/system",
		"dhcp.reservation.a":     "qemu:///system",
		"dhcp.reservation.b":     "qemu+ssh://ops@hv2/system",
	} {
		r := p.Resource(addr)
		if r == nil {
			continue
		}
		if got := h.HypervisorOf(r); got != want {
			t.Errorf("%s: on %q, want %q", addr, got, want)
		}
	}
	if h.driver("qemu:///system") != h.driver("qemu:///system") {
		t.Error("two drivers for one URI")
	}
	if h.driver("qemu:///system") == h.driver("test:///default") {
		t.Error("one driver for two URIs")
	}
	if got := h.driver("qemu+ssh://ops@hv2/system").URI(); got != "qemu+ssh://ops@hv2/system" {
		t.Errorf("driver URI %q", got)
	}

	spec := func(v any) json.RawMessage {
		b, _ := json.Marshal(v)
		return b
	}
	for _, c := range []struct {
		name string
		e    apply.Entry
		want string
	}{
		{"recorded wins over the spec and --libvirt-uri", apply.Entry{Kind: "libvirt.pool", Hypervisor: "test:///default",
			Spec: spec(map[string]string{"on": "qemu+ssh://ops@hv2/system"})}, "test:///default"},
		{"an older entry: its spec's on", apply.Entry{Kind: "libvirt.pool", Spec: spec(map[string]string{"on": "qemu+ssh://ops@hv2/system"})}, "qemu+ssh://ops@hv2/system"},
		{"an older entry without on: --libvirt-uri", apply.Entry{Kind: "libvirt.domain", Spec: spec(map[string]string{})}, "qemu:///system"},
		{"an older reservation: its network's", apply.Entry{Kind: "dhcp.reservation", Spec: spec(map[string]string{"network": "libvirt.network.remote"})}, "qemu+ssh://ops@hv2/system"},
		{"a recorded reservation", apply.Entry{Kind: "dhcp.reservation", Hypervisor: "test:///default", Spec: spec(map[string]string{"network": "libvirt.network.remote"})}, "test:///default"},
	} {
		if got := h.entryHypervisor(&c.e); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}

// TestRouterReplacesAMovedResource: an object the state records on one
// hypervisor and that the script now places on another is replaced, the
// "on" attribute forcing it; recording entries get the URI actually used.
func TestRouterReplacesAMovedResource(t *testing.T) {
	if _, err := os.Stat("/run/libvirt/libvirt-sock"); err != nil {
		if os.Getenv("STUDIORUN_REQUIRE_INTEGRATION") == "1" {
			t.Fatal("libvirtd is not running (no /run/libvirt/libvirt-sock) and STUDIORUN_REQUIRE_INTEGRATION=1")
		}
		t.Skip("libvirtd is not running (no /run/libvirt/libvirt-sock)")
	}
	p := evalScript(t, `libvirt.pool("studiorun-moved-pool", path = "/studiorun/moved")`)
	rt := NewRouter(DriverOptions{LibvirtURI: "test:///default", Root: t.TempDir()})
	defer rt.Close()
	d, err := rt.Route("libvirt.pool", nil)
	if err != nil {
		t.Fatal(err)
	}
	d.SetPlan(p)
	r := p.Resource("libvirt.pool.studiorun-moved-pool")
	owned := &apply.Entry{Address: r.Address, Kind: r.Kind(), Name: r.Name, ID: "00000000-0000-0000-0000-000000000001",
		Hypervisor: "qemu+ssh://ops@hv2/system", Spec: json.RawMessage(`{}`)}
	c, err := d.Diff(context.Background(), r, owned)
	if err != nil {
		t.Fatal(err)
	}
	if c.Action != apply.Replace || len(c.Attrs) == 0 || c.Attrs[0].Name != "on" || !c.Attrs[0].ForcesReplace ||
		c.Attrs[0].Old != "qemu+ssh://ops@hv2/system" || c.Attrs[0].New != "test:///default" {
		t.Errorf("change = %v %+v, want a replace forced by on", c.Action, c.Attrs)
	}
	// Unmoved: the driver of the entry's own hypervisor diffs as usual.
	owned.Hypervisor = "test:///default"
	if c, err = d.Diff(context.Background(), r, owned); err != nil {
		t.Fatal(err)
	}
	if c.Action == apply.Replace && len(c.Attrs) > 0 && c.Attrs[0].Name == "on" {
		t.Errorf("unmoved resource replaced for on: %+v", c.Attrs)
	}
}
