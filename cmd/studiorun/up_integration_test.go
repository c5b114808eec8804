package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	golibvirt "github.com/digitalocean/go-libvirt"
	"github.com/digitalocean/go-libvirt/socket/dialers"
)

// requireLibvirtd skips a test when no libvirtd runs here, unless
// STUDIORUN_REQUIRE_INTEGRATION=1 (CI), where that is a failure.
func requireLibvirtd(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("/run/libvirt/libvirt-sock"); err == nil {
		return
	}
	if os.Getenv("STUDIORUN_REQUIRE_INTEGRATION") == "1" {
		t.Fatal("libvirtd is not running (no /run/libvirt/libvirt-sock) and STUDIORUN_REQUIRE_INTEGRATION=1")
	}
	t.Skip("libvirtd is not running (no /run/libvirt/libvirt-sock)")
}

// holdTestDriver keeps a connection to test:///default open for the test:
// libvirtd frees the test driver's objects when its last connection
// closes, and each studiorun command opens and closes its own.
func holdTestDriver(t *testing.T) {
	t.Helper()
	l := golibvirt.NewWithDialer(dialers.NewLocal())
	if err := l.ConnectToURI(golibvirt.TestDefault); err != nil {
		t.Fatalf("connect to test:///default: %v", err)
	}
	t.Cleanup(func() { l.Disconnect() })
}

// TestStudioUpPlanDownOnTestDriver runs the studio on libvirt's test
// driver, through the CLI as a user would: up with 3 dev hosts, a plan
// that finds nothing to change, 3 -> 1 dev hosts deleting exactly two, and
// down leaving nothing the script owned.
func TestStudioUpPlanDownOnTestDriver(t *testing.T) {
	requireLibvirtd(t)
	holdTestDriver(t)
	// A project of its own (a .git folder marks its root), so that the
	// state lands in it and not in the repository.
	root := t.TempDir()
	if err := os.Mkdir(filepath.Join(root, ".git"), 0o755); err != nil {
		t.Fatal(err)
	}
	copyProject(t, root, "scripts/studio.star", "scripts/studio_hosts.star")
	images := t.TempDir()
	image := filepath.Join(images, "vfx-studio-soe_0.1.0.qcow2")
	if out, err := exec.Command("qemu-img", "create", "-f", "qcow2", image, "64M").CombinedOutput(); err != nil {
		t.Fatalf("qemu-img: %v\n%s", err, out)
	}
	state := filepath.Join(root, ".studiorun", "studio.state.json")
	flags := []string{"--libvirt-uri", "test:///default", "--var", "image_root=" + images}
	run := func(args ...string) (int, string) {
		code, out, errOut := studiorun(t, root, append(append([]string{"scripts/studio.star"}, args...), flags...)...)
		return code, out + errOut
	}
	t.Cleanup(func() { run("down", "--yes") })

	if code, out := run("up", "--yes", "--var", "dev_host_count=3"); code != 0 {
		t.Fatalf("up: exit %d\n%s", code, out)
	}
	if code, out := run("plan", "--detailed-exitcode", "--var", "dev_host_count=3"); code != 0 {
		t.Fatalf("plan after up: exit %d, want 0 (no changes)\n%s", code, out)
	}
	code, out := run("up", "--yes", "--var", "dev_host_count=1")
	if code != 0 {
		t.Fatalf("up 3 -> 1: exit %d\n%s", code, out)
	}
	for _, gone := range []string{"libvirt.domain.vfx-dev-002", "libvirt.domain.vfx-dev-003", "libvirt.volume.vfx-dev-003.qcow2", "dhcp.reservation.vfx-dev-002"} {
		if !strings.Contains(out, "- "+gone) {
			t.Errorf("3 -> 1 does not delete %s:\n%s", gone, out)
		}
	}
	if strings.Contains(out, "- libvirt.domain.vfx-dev-001") {
		t.Errorf("3 -> 1 deletes vfx-dev-001:\n%s", out)
	}
	if code, out := run("down", "--yes", "--var", "dev_host_count=1"); code != 0 {
		t.Fatalf("down: exit %d\n%s", code, out)
	}
	data, err := os.ReadFile(state)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(data), `"address"`) {
		t.Errorf("down left owned objects in the state:\n%s", data)
	}
}

// networkCase runs studiorun on testdata/apply/network_replace.star (a
// network, two reservations and a running domain on it) on
// test:///default, in a project of its own.
type networkCase struct {
	t   *testing.T
	l   *golibvirt.Libvirt
	dir string
}

const networkCaseNet = "studiorun-replace-net"

// newNetworkCase sets the project up and runs a first up.
func newNetworkCase(t *testing.T) *networkCase {
	t.Helper()
	requireLibvirtd(t)
	holdTestDriver(t)
	nc := &networkCase{t: t, l: dialLibvirt(t, "test:///default")}
	if networkExists(nc.l, networkCaseNet) {
		t.Fatalf("test:///default already has network %s (another run of this test holds the driver?)", networkCaseNet)
	}
	nc.dir = tempProject(t, "network_replace.star")
	t.Cleanup(func() { nc.run("down", "--yes") })
	if code, out := nc.run("up", "--yes"); code != 0 {
		t.Fatalf("up: exit %d\n%s", code, out)
	}
	return nc
}

func (nc *networkCase) run(args ...string) (int, string) {
	code, out, errOut := studiorun(nc.t, nc.dir, append(append([]string{"network_replace.star"}, args...), "--libvirt-uri", "test:///default")...)
	return code, out + errOut
}

// change runs up with the var assignment change, whose output must say
// each of want, then a plan with it that must find nothing to change, and
// returns the network's definition after that.
func (nc *networkCase) change(change string, want ...string) string {
	t := nc.t
	t.Helper()
	code, out := nc.run("up", "--yes", "--var", change)
	if code != 0 {
		t.Fatalf("up --var %s: exit %d\n%s", change, code, out)
	}
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("up --var %s does not say %q:\n%s", change, w, out)
		}
	}
	if code, out := nc.run("plan", "--detailed-exitcode", "--var", change); code != 0 {
		t.Errorf("plan after up --var %s: exit %d, want 0 (no changes)\n%s", change, code, out)
	}
	net, err := nc.l.NetworkLookupByName(networkCaseNet)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := nc.l.NetworkGetXMLDesc(net, 0)
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

// TestReplacedNetworkTakesItsReservationsAlong changes what forces a
// network to be replaced (its DNS domain): its DHCP reservations, which
// live in its definition, are replaced with it, so the up converges (a
// plan after it is empty) and the new network holds both hosts; the
// running domain on it has its NIC plugged in again (which the test
// driver cannot do: it says so).
func TestReplacedNetworkTakesItsReservationsAlong(t *testing.T) {
	doc := newNetworkCase(t).change("dns_domain=two.test",
		"-/+ libvirt.network.studiorun-replace-net",
		"~ libvirt.domain.studiorun-replace-dom\n      ~ nics: 02:00:00:c0:00:01 -> 02:00:00:c0:00:01  # unplugged and plugged again, live: libvirt.network.studiorun-replace-net is replaced",
		"NIC 02:00:00:c0:00:01 joins the new network when the domain starts again", // the test driver cannot hot-plug
		"-/+ dhcp.reservation.studiorun-replace-h1\n      ~ libvirt.network.studiorun-replace-net  # forces replacement  # holds it, and is replaced",
		"dhcp.reservation.studiorun-replace-h2: gone with libvirt.network.studiorun-replace-net",
		"Apply complete: 1 updated, 3 replaced.",
	)
	for _, h := range []string{"studiorun-replace-h1", "studiorun-replace-h2", "two.test"} {
		if !strings.Contains(doc, h) {
			t.Errorf("the new network's definition lacks %s:\n%s", h, doc)
		}
	}
}

// TestDHCPRangeChangesInPlace changes a network's DHCP range: an update in
// place (NetworkUpdate, live), not a replace, so its reservations and its
// guests' links stay.
func TestDHCPRangeChangesInPlace(t *testing.T) {
	nc := newNetworkCase(t)
	doc := nc.change("range_end=8",
		"~ libvirt.network.studiorun-replace-net\n      ~ dhcp_range: 10.251.44.2-10.251.44.9 -> 10.251.44.2-10.251.44.8  # applied live",
		"Apply complete: 1 updated.",
	)
	for _, want := range []string{"end='10.251.44.8'", "studiorun-replace-h1", "studiorun-replace-h2"} {
		if !strings.Contains(doc, want) {
			t.Errorf("the network's definition lacks %s:\n%s", want, doc)
		}
	}
	if strings.Contains(doc, "end='10.251.44.9'") {
		t.Errorf("the network still has the old range:\n%s", doc)
	}

	// A run stopped between adding the new range and removing the old one
	// leaves both: the next up removes the old one.
	net, err := nc.l.NetworkLookupByName(networkCaseNet)
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.l.NetworkUpdateCompat(net, golibvirt.NetworkUpdateCommandAddLast, golibvirt.NetworkSectionIPDhcpRange, -1,
		"<range start='10.251.44.2' end='10.251.44.9'/>", golibvirt.NetworkUpdateAffectConfig|golibvirt.NetworkUpdateAffectLive); err != nil {
		t.Fatal(err)
	}
	doc = nc.change("range_end=8", "~ dhcp_range: 10.251.44.2-10.251.44.8, 10.251.44.2-10.251.44.9 -> 10.251.44.2-10.251.44.8")
	if strings.Contains(doc, "end='10.251.44.9'") {
		t.Errorf("the network still has the old range after the second up:\n%s", doc)
	}
}
