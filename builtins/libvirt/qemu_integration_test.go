package libvirt_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	golibvirt "github.com/digitalocean/go-libvirt"

	"libvirt.org/go/libvirtxml"

	"github.com/studiorun/studiorun/runtime/apply"
)

const qemuURI = "qemu:///system"

// needQemu skips (or fails under STUDIORUN_REQUIRE_INTEGRATION=1) without
// libvirtd or qemu-img.
func needQemu(t *testing.T) {
	t.Helper()
	needLibvirt(t)
	if _, err := exec.LookPath("qemu-img"); err != nil {
		if os.Getenv("STUDIORUN_REQUIRE_INTEGRATION") == "1" {
			t.Fatalf("qemu-img is required (STUDIORUN_REQUIRE_INTEGRATION=1): %v", err)
		}
		t.Skipf("qemu-img is not installed: %v", err)
	}
}

// qemuImg runs qemu-img.
func qemuImg(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("qemu-img", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("qemu-img %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// TestQemuSystemPoolUploadOverlayNetwork runs the storage and network
// path on qemu:///system: a dir pool in a temporary directory, a small
// qcow2 uploaded with StorageVolUpload (sha256 recorded: unchanged is
// not uploaded again, changed is replaced together with its overlay), a
// qcow2 overlay with the right backing store, a NAT network with a
// reservation live and persistent, and a defined (not started) domain.
func TestQemuSystemPoolUploadOverlayNetwork(t *testing.T) {
	needQemu(t)
	root := t.TempDir()
	// Under /var/lib/libvirt/images, where qemu (running as its own user)
	// can reach the disks; the driver's pool build makes the directory.
	poolDir := "/var/lib/libvirt/images/studiorun-test-qpool-" + suffix
	t.Cleanup(func() { os.RemoveAll(poolDir) })
	if err := os.MkdirAll(filepath.Join(root, "images"), 0o755); err != nil {
		t.Fatal(err)
	}
	image := filepath.Join(root, "images", "base.qcow2")
	qemuImg(t, "create", "-q", "-f", "qcow2", image, "64M")

	// A running guest needs virtlogd (qemu's console log) beside libvirtd.
	_, err := os.Stat("/run/libvirt/virtlogd-sock")
	running := err == nil

	d := newDriver(t, qemuURI, root)
	l := connect(t, qemuURI)
	st := state{}
	rep := &reporter{}
	script := fmt.Sprintf(`
s = "%s"
p = libvirt.pool("studiorun-test-qpool-" + s, path = %q)
base = libvirt.volume("studiorun-test-qbase-" + s, pool = p, source = "images/base.qcow2")
disk = libvirt.volume("studiorun-test-qdisk-" + s, pool = p, base = base, size = "128MiB")
libvirt.volume("studiorun-test-qdisk2-" + s, pool = p, base = base)
net = libvirt.network("studiorun-test-qnet-" + s, subnet = "10.251.9.0/24", dhcp_range = ("10.251.9.100", "10.251.9.200"), domain = "studio.test", autostart = False)
dhcp.reservation(net, mac = "02:00:00:bb:00:01", ip = "10.251.9.10", hostname = "studiorun-test-qh-" + s)
libvirt.domain("studiorun-test-qdom-" + s, memory = %d, max_memory = 128, disks = [libvirt.disk(disk, bus = "scsi")],
    nics = [libvirt.nic(network = net, mac = "02:00:00:bb:00:01")], shutdown_timeout = "3s", running = %s)
`, suffix, poolDir, 128, map[bool]string{true: "True", false: "False"}[running])
	plan := evalScript(t, root, script)
	st.up(t, d, plan, rep)
	domAddr := resourceOf(t, plan, "libvirt.domain", "studiorun-test-qdom-").Address
	baseAddr := resourceOf(t, plan, "libvirt.volume", "studiorun-test-qbase-").Address
	fi, err := os.Stat(image)
	if err != nil {
		t.Fatal(err)
	}
	if got := rep.steps[string(baseAddr)+" upload"]; got != fi.Size() {
		t.Errorf("upload progress = %d, want the image's size %d", got, fi.Size())
	}
	st.allNoOp(t, d, plan)

	// The uploaded volume holds the image; the overlay is backed by it.
	basePath := filepath.Join(poolDir, "studiorun-test-qbase-"+suffix)
	if out := qemuImg(t, "compare", "-q", image, basePath); out != "" {
		t.Errorf("uploaded volume differs from the image: %s", out)
	}
	p, _ := l.StoragePoolLookupByName("studiorun-test-qpool-" + suffix)
	v, err := l.StorageVolLookupByName(p, "studiorun-test-qdisk-"+suffix)
	if err != nil {
		t.Fatal(err)
	}
	xs, _ := l.StorageVolGetXMLDesc(v, 0)
	var vx libvirtxml.StorageVolume
	if err := vx.Unmarshal(xs); err != nil {
		t.Fatal(err)
	}
	if vx.BackingStore == nil || vx.BackingStore.Path != basePath || vx.BackingStore.Format.Type != "qcow2" {
		t.Errorf("overlay backing store = %s, want %s (qcow2)", jsonOf(vx.BackingStore), basePath)
	}
	if vx.Capacity == nil || vx.Capacity.Value != 128<<20 {
		t.Errorf("overlay capacity = %s, want 128 MiB", jsonOf(vx.Capacity))
	}

	// An overlay without a size has its base image's virtual size.
	if c := volumeCapacity(t, l, "studiorun-test-qpool-"+suffix, "studiorun-test-qdisk2-"+suffix); c != 64<<20 {
		t.Errorf("overlay without size: capacity %d, want the image's 64 MiB", c)
	}

	netName := "studiorun-test-qnet-" + suffix
	for _, flags := range networkXMLFlags(qemuURI) {
		dh, dns := networkHosts(t, l, netName, flags)
		if len(dh) != 1 || len(dns) != 1 {
			t.Errorf("network hosts (flags %d) = %v %v, want the reservation", flags, dh, dns)
		}
	}

	// A changed image replaces the uploaded volume and its overlay.
	qemuImg(t, "create", "-q", "-f", "qcow2", image, "96M")
	plan2 := evalScript(t, root, script)
	changes := st.up(t, d, plan2, rep)
	for _, prefix := range []string{"studiorun-test-qbase-", "studiorun-test-qdisk-", "studiorun-test-qdisk2-"} {
		c := changes[resourceOf(t, plan2, "libvirt.volume", prefix).Address]
		if c.Action != apply.Replace || len(c.Attrs) == 0 || !c.Attrs[0].ForcesReplace {
			t.Errorf("%s after the image changed: %s %s, want a replace", prefix, c.Action, jsonOf(c.Attrs))
		}
	}
	if out := qemuImg(t, "compare", "-q", image, basePath); out != "" {
		t.Errorf("re-uploaded volume differs from the new image: %s", out)
	}
	st.allNoOp(t, d, plan2)
	if c := volumeCapacity(t, l, "studiorun-test-qpool-"+suffix, "studiorun-test-qdisk2-"+suffix); c != 96<<20 {
		t.Errorf("overlay on the new image: capacity %d, want 96 MiB", c)
	}

	// The domain is defined with type qemu, a virtio-scsi controller and
	// its NIC; down removes it all and leaves the pool directory empty.
	dom, err := l.DomainLookupByName("studiorun-test-qdom-" + suffix)
	if err != nil {
		t.Fatal(err)
	}
	ds, _ := l.DomainGetXMLDesc(dom, 0)
	var dx libvirtxml.Domain
	if err := dx.Unmarshal(ds); err != nil {
		t.Fatal(err)
	}
	if dx.Type != "qemu" || len(dx.Devices.Disks) != 1 || dx.Devices.Disks[0].Target.Bus != "scsi" || len(dx.Devices.Interfaces) != 1 {
		t.Errorf("domain XML: type %s, disks %s, interfaces %d", dx.Type, jsonOf(dx.Devices.Disks), len(dx.Devices.Interfaces))
	}
	if !running {
		st.down(t, d, plan2, rep)
		msg := "virtlogd is not running (start it with virtlogd -d): the running-guest half of this test did not run"
		if os.Getenv("STUDIORUN_REQUIRE_INTEGRATION") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	state, _, err := l.DomainGetState(dom, 0)
	if err != nil || golibvirt.DomainState(state) != golibvirt.DomainRunning {
		t.Errorf("domain state = %d, %v; want running", state, err)
	}

	// Memory within the maximum changes live, on the same running guest.
	plan3 := evalScript(t, root, strings.Replace(script, "memory = 128,", "memory = 96,", 1))
	if c := st.diff(t, d, plan3.Resource(domAddr)); c.Action != apply.Update || c.Attrs[0].Name != "memory" || c.Attrs[0].Note != "" {
		t.Errorf("memory 128 -> 96: %s %s, want a live update", c.Action, jsonOf(c.Attrs))
	}
	st.up(t, d, plan3, rep)
	after, err := l.DomainLookupByName(dom.Name)
	if err != nil || after.UUID != dom.UUID || after.ID != dom.ID {
		t.Errorf("the domain changed identity: %v", err)
	}
	// The balloon request is live, but a guest with no OS (no balloon
	// driver) keeps its memory: check the definition the update wrote.
	cs, _ := l.DomainGetXMLDesc(after, golibvirt.DomainXMLInactive)
	var cx libvirtxml.Domain
	if err := cx.Unmarshal(cs); err != nil || cx.CurrentMemory == nil || cx.CurrentMemory.Value != 96<<10 {
		t.Errorf("configured memory = %s, %v; want %d KiB", jsonOf(cx.CurrentMemory), err, 96<<10)
	}
	st.allNoOp(t, d, plan3)

	// Down asks the guest to shut down, which firmware without an OS
	// ignores: it waits shutdown_timeout, then forces it off.
	st.down(t, d, plan3, rep)
	if notes := strings.Join(rep.notes, "\n"); !strings.Contains(notes, "waiting for the guest to shut down: 2s of 3s") || !strings.Contains(notes, "did not shut down within 3s") {
		t.Errorf("shutdown: notes %v; want a wait, then a forced stop", rep.notes)
	}
	if _, err := l.StoragePoolLookupByName("studiorun-test-qpool-" + suffix); err == nil {
		t.Errorf("pool survived down")
	}
	if _, err := l.NetworkLookupByName(netName); err == nil {
		t.Errorf("network survived down")
	}
}

// volumeCapacity returns a volume's capacity in bytes.
func volumeCapacity(t *testing.T, l *golibvirt.Libvirt, pool, name string) uint64 {
	t.Helper()
	p, err := l.StoragePoolLookupByName(pool)
	if err != nil {
		t.Fatal(err)
	}
	v, err := l.StorageVolLookupByName(p, name)
	if err != nil {
		t.Fatal(err)
	}
	_, capacity, _, err := l.StorageVolGetInfo(v)
	if err != nil {
		t.Fatal(err)
	}
	return capacity
}
