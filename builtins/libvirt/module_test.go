package libvirt

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"go.starlark.net/starlark"

	"github.com/studiorun/studiorun/builtins/dhcp"
	"github.com/studiorun/studiorun/runtime"
)

// eval evaluates a script in a fresh project with the libvirt and dhcp
// modules.
func eval(t *testing.T, script string) (*runtime.Plan, error) {
	t.Helper()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, ".studiorun"), 0o755); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "main.star")
	if err := os.WriteFile(file, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	return runtime.Eval(runtime.Options{
		Script:  file,
		Modules: starlark.StringDict{"libvirt": Module, "dhcp": dhcp.Module},
	})
}

func mustEval(t *testing.T, script string) *runtime.Plan {
	t.Helper()
	p, err := eval(t, script)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func deps(addrs ...runtime.Address) []runtime.Address { return addrs }

func TestDomainRecordsDisksNICsAndDependencies(t *testing.T) {
	p := mustEval(t, `
pool = libvirt.pool("studio", path = "/var/lib/libvirt/images/studio")
soe = libvirt.volume("soe.qcow2", pool = pool, source = "images/soe.qcow2")
disk = libvirt.volume("dev.qcow2", pool = pool, base = soe, size = "40GiB")
data = libvirt.volume("data.raw", pool = pool, size = 2048, format = "raw")
net = libvirt.existing_network("default")
libvirt.domain("dev", vcpu = 2, memory = "2GiB", max_memory = "4GiB",
    disks = [libvirt.disk(disk, bus = "scsi"), data],
    nics = [libvirt.nic(network = net, mac = "02:00:00:00:00:0A"), libvirt.nic(bridge = "br0", mac = dhcp.laa(2), model = "e1000")],
    replace_on_change = ["nics"], shutdown_timeout = 90)
`)
	soe := p.Resource("libvirt.volume.soe.qcow2").Spec.(*Volume)
	if soe.Source != "images/soe.qcow2" || soe.Format != "qcow2" {
		t.Errorf("base volume = %+v", soe)
	}
	overlay := p.Resource("libvirt.volume.dev.qcow2")
	if got := overlay.Spec.(*Volume); got.Base != "libvirt.volume.soe.qcow2" || got.SizeMiB != 40*1024 {
		t.Errorf("overlay = %+v", got)
	}
	if want := deps("libvirt.pool.studio", "libvirt.volume.soe.qcow2"); !reflect.DeepEqual(overlay.DependsOn, want) {
		t.Errorf("overlay depends on %v, want %v", overlay.DependsOn, want)
	}
	dom := p.Resource("libvirt.domain.dev")
	spec := dom.Spec.(*Domain)
	wantDisks := []DomainDisk{{"libvirt.volume.dev.qcow2", "scsi"}, {"libvirt.volume.data.raw", "virtio"}}
	wantNICs := []DomainNIC{
		{Network: "libvirt.existing_network.default", MAC: "02:00:00:00:00:0a", Model: "virtio"},
		{Bridge: "br0", MAC: "02:00:00:00:00:02", Model: "e1000"},
	}
	if !reflect.DeepEqual(spec.Disks, wantDisks) || !reflect.DeepEqual(spec.NICs, wantNICs) {
		t.Errorf("disks %+v, nics %+v; want %+v, %+v", spec.Disks, spec.NICs, wantDisks, wantNICs)
	}
	if spec.MemoryMiB != 2048 || spec.MaxMemoryMiB != 4096 || spec.ShutdownTimeout.String() != "1m30s" {
		t.Errorf("memory %d, max %d, shutdown_timeout %s", spec.MemoryMiB, spec.MaxMemoryMiB, spec.ShutdownTimeout)
	}
	want := deps("libvirt.existing_network.default", "libvirt.volume.data.raw", "libvirt.volume.dev.qcow2")
	if !reflect.DeepEqual(dom.DependsOn, want) {
		t.Errorf("domain depends on %v, want %v", dom.DependsOn, want)
	}
}

func TestDomainJSONNamesTheArguments(t *testing.T) {
	p := mustEval(t, `libvirt.domain("tiny")`)
	attrs, err := p.Resource("libvirt.domain.tiny").Attributes()
	if err != nil {
		t.Fatal(err)
	}
	want := `{"vcpu":1,"memory_mib":1024,"disks":[],"nics":[],"autostart":false,"running":true,"serial_console":true,"shutdown_timeout":"2m0s","replace_on_change":[]}`
	if string(attrs) != want {
		t.Errorf("attributes:\n got %s\nwant %s", attrs, want)
	}
}

func TestExistingVolumeResolvesAPoolNamedLater(t *testing.T) {
	p := mustEval(t, `
centos = libvirt.existing_volume("centos7.qcow2", pool = "images")
libvirt.domain("legacy", disks = [centos])
libvirt.existing_pool("images")
`)
	vol := p.Resource("libvirt.existing_volume.centos7.qcow2")
	if got := vol.Spec.(*ExistingVolume).Pool; got != "libvirt.existing_pool.images" {
		t.Errorf("pool = %q, want libvirt.existing_pool.images", got)
	}
	if want := deps("libvirt.existing_pool.images"); !reflect.DeepEqual(vol.DependsOn, want) {
		t.Errorf("existing volume depends on %v, want %v", vol.DependsOn, want)
	}
}

func TestDomainWaitsForTheReservationsOfItsMACs(t *testing.T) {
	p := mustEval(t, `
net = libvirt.network("studio", subnet = "172.16.0.0/24", dhcp_range = ("172.16.0.2", "172.16.0.9"), domain = "studio.lan")
libvirt.domain("dev", nics = [libvirt.nic(network = net, mac = dhcp.laa(1))])
dhcp.reservation(net, mac = dhcp.laa(1), ip = "172.16.0.11", hostname = "dev")
dhcp.reservation(net, mac = dhcp.laa(2), ip = "172.16.0.12", hostname = "laptop")
`)
	want := deps("dhcp.reservation.dev", "libvirt.network.studio")
	if got := p.Resource("libvirt.domain.dev").DependsOn; !reflect.DeepEqual(got, want) {
		t.Errorf("domain depends on %v, want %v", got, want)
	}
}

func TestNetworkServesDHCPReservations(t *testing.T) {
	p := mustEval(t, `libvirt.network("lab", subnet = "10.9.0.0/16", gateway = "10.9.0.254", mode = "isolated", bridge = "virbr-lab", autostart = False)`)
	n := p.Resource("libvirt.network.lab").Spec.(*Network)
	var _ dhcp.Network = n
	gw, ok := n.DHCPGateway()
	if n.DHCPSubnet().String() != "10.9.0.0/16" || !ok || gw.String() != "10.9.0.254" {
		t.Errorf("subnet %s, gateway %s %v", n.DHCPSubnet(), gw, ok)
	}
	if n.Mode != "isolated" || n.Bridge != "virbr-lab" || n.Autostart || n.DHCPRange != nil {
		t.Errorf("network = %+v", n)
	}
}

func TestNICAndDiskValuesShowTheirArguments(t *testing.T) {
	_, err := eval(t, `
net = libvirt.existing_network("default")
n = libvirt.nic(network = net, mac = "02:00:00:00:00:01")
pool = libvirt.existing_pool("default")
d = libvirt.disk(libvirt.existing_volume("a.qcow2", pool = pool), bus = "sata")
fail(str(n), n.mac, n.bridge, n.network.address, str(d), d.bus, d.volume.name)
`)
	want := `fail: libvirt.nic(network = libvirt.existing_network.default, mac = "02:00:00:00:00:01", model = "virtio") 02:00:00:00:00:01 None libvirt.existing_network.default libvirt.disk(libvirt.existing_volume.a.qcow2, bus = "sata") sata a.qcow2`
	if err == nil || !strings.HasSuffix(err.Error(), want) {
		t.Errorf("got %v\nwant ...%s", err, want)
	}
}

func TestVolumeNamesAreUniqueWithinAPool(t *testing.T) {
	_, err := eval(t, `
pool = libvirt.existing_pool("default")
libvirt.volume("a.qcow2", pool = pool, size = 1024)
libvirt.existing_volume("a.qcow2", pool = "default")
`)
	want := `main.star:4:24: libvirt.existing_volume "a.qcow2": volume name a.qcow2 in pool default is already used by libvirt.volume.a.qcow2 at main.star:3:15`
	if err == nil || err.Error() != want {
		t.Errorf("got %v\nwant %s", err, want)
	}
}

func TestOverlayCannotShrinkItsBase(t *testing.T) {
	_, err := eval(t, `
pool = libvirt.existing_pool("default")
base = libvirt.volume("base.qcow2", pool = pool, size = "20GiB")
libvirt.volume("top.qcow2", pool = pool, base = base, size = "10GiB")
`)
	want := `main.star:4:15: libvirt.volume "top.qcow2": size 10240 MiB is smaller than its base libvirt.volume.base.qcow2 (20480 MiB): an overlay can grow, not shrink`
	if err == nil || err.Error() != want {
		t.Errorf("got %v\nwant %s", err, want)
	}
}

func TestDomainDirectKernelBoot(t *testing.T) {
	p := mustEval(t, `libvirt.domain("tiny", kernel = "/var/lib/libvirt/boot/vmlinuz", initrd = "/var/lib/libvirt/boot/initrd.img", cmdline = "console=ttyS0")`)
	attrs, err := p.Resource("libvirt.domain.tiny").Attributes()
	if err != nil {
		t.Fatal(err)
	}
	want := `{"vcpu":1,"memory_mib":1024,"disks":[],"nics":[],"autostart":false,"running":true,"serial_console":true,"shutdown_timeout":"2m0s","replace_on_change":[],"kernel":"/var/lib/libvirt/boot/vmlinuz","initrd":"/var/lib/libvirt/boot/initrd.img","cmdline":"console=ttyS0"}`
	if string(attrs) != want {
		t.Errorf("attributes:\n got %s\nwant %s", attrs, want)
	}
	for _, tc := range []struct{ args, want string }{
		{`kernel = "/boot/vmlinuz"`, ``},
		{`kernel = "boot/vmlinuz"`, `kernel "boot/vmlinuz": want an absolute path on the hypervisor such as "/var/lib/libvirt/boot/vmlinuz"`},
		{`kernel = "/boot/vmlinuz", initrd = "/boot/../initrd.img"`, `initrd "/boot/../initrd.img": want an absolute path on the hypervisor such as "/var/lib/libvirt/boot/initrd.img"`},
		{`initrd = "/boot/initrd.img"`, `initrd "/boot/initrd.img" needs kernel, the path on the hypervisor of the kernel that boots with it`},
		{`cmdline = "quiet"`, `cmdline "quiet" needs kernel, the path on the hypervisor of the kernel it is passed to`},
	} {
		_, err := eval(t, `libvirt.domain("tiny", `+tc.args+`)`)
		want := ""
		if tc.want != "" {
			want = `main.star:1:15: libvirt.domain "tiny": ` + tc.want
		}
		if got := fmt.Sprint(err); (err == nil) != (want == "") || (err != nil && got != want) {
			t.Errorf("%s:\n got %v\nwant %s", tc.args, err, want)
		}
	}
}
