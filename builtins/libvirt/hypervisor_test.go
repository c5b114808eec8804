package libvirt

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestHypervisorValue(t *testing.T) {
	for _, c := range []struct{ uri, name, want string }{
		{`"qemu+ssh://ops@hv2/system"`, "", "hv2"},
		{`"qemu+tcp://hv3.studio.lan:16509/system"`, "", "hv3.studio.lan"},
		{`"qemu+tls://hv4/session"`, "", "hv4"},
		{`"qemu:///system"`, "", "local"},
		{`"test:///default"`, `, name = "lab"`, "lab"},
	} {
		p := mustEval(t, `
hv = libvirt.hypervisor(`+c.uri+c.name+`)
libvirt.pool("p", path = "/srv/p", on = hv)
if hv.name != "`+c.want+`" or hv.uri != `+c.uri+`:
    fail("got", hv.name, hv.uri)
if type(hv) != "libvirt.hypervisor":
    fail(type(hv))
`)
		if got := p.Resource("libvirt.pool.p").Spec.(*Pool).On; got != strings.Trim(c.uri, `"`) {
			t.Errorf("%s: pool on %q", c.uri, got)
		}
	}
}

// TestOnEverywhere places each kind on a hypervisor, and checks that
// without on the attribute is absent (existing plans stay byte-identical).
func TestOnEverywhere(t *testing.T) {
	p := mustEval(t, `
hv2 = libvirt.hypervisor("qemu+ssh://ops@hv2/system")
pool = libvirt.pool("studio", path = "/var/lib/libvirt/images/studio", on = hv2)
images = libvirt.existing_pool("images", on = hv2)
debian = libvirt.existing_volume("debian.qcow2", pool = "images", on = hv2)
base = libvirt.volume("base.qcow2", pool = pool, size = "1GiB", on = hv2)
disk = libvirt.volume("dev.qcow2", pool = pool, base = debian, on = hv2)
net = libvirt.network("studio", subnet = "172.16.0.0/24", on = hv2)
default = libvirt.existing_network("default", on = hv2)
libvirt.domain("dev", disks = [disk], nics = [libvirt.nic(network = net, mac = dhcp.laa(1)), libvirt.nic(network = default, mac = dhcp.laa(2))], on = hv2)
dhcp.reservation(net, mac = dhcp.laa(1), ip = "172.16.0.11", hostname = "dev")

local_pool = libvirt.pool("local", path = "/srv/local")
libvirt.volume("local.qcow2", pool = local_pool, size = 10)
`)
	for _, r := range p.Resources {
		attrs, err := r.Attributes()
		if err != nil {
			t.Fatal(err)
		}
		var a struct {
			On *string `json:"on"`
		}
		if err := json.Unmarshal(attrs, &a); err != nil {
			t.Fatal(err)
		}
		switch {
		case r.Kind() == "dhcp.reservation":
			if a.On != nil {
				t.Errorf("%s: on %q: a reservation follows its network", r.Address, *a.On)
			}
		case strings.HasPrefix(r.Name, "local"):
			if a.On != nil {
				t.Errorf("%s: on %q, want it omitted for the default hypervisor", r.Address, *a.On)
			}
			if HypervisorOf(r.Spec) != "" {
				t.Errorf("%s: HypervisorOf = %q", r.Address, HypervisorOf(r.Spec))
			}
		default:
			if a.On == nil || *a.On != "qemu+ssh://ops@hv2/system" {
				t.Errorf("%s: on %v, want qemu+ssh://ops@hv2/system", r.Address, a.On)
			}
			if HypervisorOf(r.Spec) != "qemu+ssh://ops@hv2/system" {
				t.Errorf("%s: HypervisorOf = %q", r.Address, HypervisorOf(r.Spec))
			}
		}
	}
	if got := p.Resource("libvirt.existing_volume.debian.qcow2").Spec.(*ExistingVolume).Pool; got != "libvirt.existing_pool.images" {
		t.Errorf("existing volume's pool = %s", got)
	}
}

// TestNamesPerHypervisor: libvirt names, pool paths and subnets are unique
// per host; two hosts may reuse them (with different addresses).
func TestNamesPerHypervisor(t *testing.T) {
	p := mustEval(t, `
hv1 = libvirt.hypervisor("qemu+ssh://ops@hv1/system")
hv2 = libvirt.hypervisor("qemu+ssh://ops@hv2/system")
libvirt.pool("studio", path = "/var/lib/libvirt/images/studio", on = hv1)
libvirt.existing_pool("studio", on = hv2)
libvirt.pool("studio2", path = "/var/lib/libvirt/images/studio", on = hv2)
libvirt.network("studio", subnet = "172.16.0.0/24", bridge = "virbr-studio", on = hv1)
libvirt.existing_network("studio", on = hv2)
libvirt.network("studio2", subnet = "172.16.0.0/24", bridge = "virbr-studio", on = hv2)
`)
	if len(p.Resources) != 6 {
		t.Errorf("%d resources, want 6", len(p.Resources))
	}
	// On one host they still clash.
	for _, script := range []string{
		`libvirt.pool("a", path = "/srv/p")
libvirt.pool("b", path = "/srv/p")`,
		`hv = libvirt.hypervisor("test:///default")
libvirt.pool("a", path = "/srv/a", on = hv)
libvirt.existing_pool("a", on = hv)`,
		`hv = libvirt.hypervisor("test:///default")
libvirt.network("a", subnet = "10.0.0.0/24", on = hv)
libvirt.network("b", subnet = "10.0.0.0/16", on = hv)`,
	} {
		if _, err := eval(t, script); err == nil {
			t.Errorf("no error for\n%s", script)
		}
	}
}

func TestHypervisorErrors(t *testing.T) {
	for _, c := range []struct{ script, want string }{
		{`libvirt.hypervisor("qemu+ssh://ops@hv2/system", name = "")`, `name: got "", want a non-empty string`},
		{`libvirt.hypervisor("test:///system")`, `path "/system": want "/default", as in "test:///default"`},
		{`libvirt.hypervisor("qemu:///system?socket=/x")`, `want a libvirt URI such as`},
		{`libvirt.hypervisor("qemu+tcp:///system")`, `qemu+tcp needs a host`},
		{`libvirt.domain("d", on = libvirt.nic(bridge = "br0", mac = dhcp.laa(1)))`, `on: got libvirt.nic, want a libvirt.hypervisor`},
	} {
		_, err := eval(t, c.script)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want it to contain %q", c.script, err, c.want)
		}
	}
}
