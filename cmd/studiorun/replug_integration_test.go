package main

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"

	"github.com/studiorun/studiorun/builtins/ssh/sshtest"
)

// TestReplacedNetworkReplugsRunningGuests boots a guest of the Debian base
// image on qemu:///system, then replaces its network (a new DNS domain).
// libvirt leaves a running guest's tap off a network made again; up plugs
// the NIC in again, live, after the reservation is back, so the guest
// gets its reserved address on the new network without a restart.
func TestReplacedNetworkReplugsRunningGuests(t *testing.T) {
	requireLibvirtd(t)
	if _, err := exec.LookPath("qemu-img"); err != nil {
		sshtest.NeedIntegration(t, "qemu-img is not installed")
	}
	images := sshtest.BuildImage(t, "debian-base.sh")
	l := dialLibvirt(t, studioURI)
	const netName, guest, mac = "studiorun-replug-net", "studiorun-replug-guest", "02:00:00:c1:00:01"
	if networkExists(l, netName) || domainExists(l, guest) {
		t.Fatalf("qemu:///system already has network %s or domain %s: a previous run left them; remove them", netName, guest)
	}
	subnet := freeSubnet(t, l)
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, ".git"), 0o755); err != nil {
		t.Fatal(err)
	}
	copyProject(t, dir, "testdata/apply/replug.star")
	if err := os.Symlink(filepath.Join(images, "debian-12-base.qcow2"), filepath.Join(dir, "base.qcow2")); err != nil {
		t.Fatal(err)
	}
	// The pool where libvirt's qemu user reads it (a test's temporary
	// folder is private); down leaves it empty, the test removes it.
	poolDir := "/var/lib/libvirt/images/studiorun-replug"
	if _, err := os.Stat(poolDir); err == nil {
		t.Fatalf("%s exists: a previous run left it; remove it", poolDir)
	}
	t.Cleanup(func() { os.Remove(poolDir) })
	run := func(args ...string) (int, string) {
		t.Helper()
		args = append(append([]string{"testdata/apply/replug.star"}, args...),
			"--libvirt-uri", studioURI, "--var", "subnet="+subnet, "--var", "pool_path="+poolDir)
		code, out, errOut := studiorun(t, dir, args...)
		return code, out + errOut
	}
	t.Cleanup(func() {
		if code, out := run("down", "--yes", "--var", "dns_domain=two.test"); code != 0 {
			t.Errorf("down: exit %d\n%s", code, out)
		}
	})
	if code, out := run("up", "--yes"); code != 0 {
		t.Fatalf("up: exit %d\n%s", code, out)
	}
	reserved := hostIP(t, subnet, 11)
	start := time.Now()
	first := waitLease(t, l, netName, mac, reserved, 0, 4*time.Minute)
	t.Logf("the guest has its lease on the first network after %s", time.Since(start).Round(time.Second))

	code, out := run("up", "--yes", "--var", "dns_domain=two.test")
	if code != 0 {
		t.Fatalf("up with a new DNS domain: exit %d\n%s", code, out)
	}
	for _, want := range []string{
		"-/+ libvirt.network." + netName,
		"~ nics: " + mac + " -> " + mac + "  # unplugged and plugged again, live",
		"NIC " + mac + " plugged in again",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("up with a new DNS domain does not say %q:\n%s", want, out)
		}
	}
	start = time.Now()
	// A lease granted after the first: the guest asked again, on the new
	// network (dnsmasq's lease file outlives the network's replace).
	waitLease(t, l, netName, mac, reserved, first+1, 2*time.Minute)
	t.Logf("the guest has its lease on the new network %s after the up", time.Since(start).Round(time.Second))
	if code, out := run("plan", "--detailed-exitcode", "--var", "dns_domain=two.test"); code != 0 {
		t.Errorf("plan after the replace: exit %d, want 0\n%s", code, out)
	}
}

// waitLease waits until network netName leases ip to mac, with an expiry
// time of at least after, and returns that expiry time.
func waitLease(t *testing.T, l *golibvirt.Libvirt, netName, mac, ip string, after int64, timeout time.Duration) int64 {
	t.Helper()
	start := time.Now()
	for time.Since(start) < timeout {
		if nw, err := l.NetworkLookupByName(netName); err == nil {
			leases, _, err := l.NetworkGetDhcpLeases(nw, golibvirt.OptString{mac}, 1, 0)
			if err == nil {
				for _, le := range leases {
					if len(le.Mac) == 1 && strings.EqualFold(le.Mac[0], mac) && net.ParseIP(le.Ipaddr).String() == ip && le.Expirytime >= after {
						return le.Expirytime
					}
				}
			}
		}
		time.Sleep(time.Second)
	}
	t.Fatalf("no lease of %s for %s on %s (expiring at %d or later) within %s", ip, mac, netName, after, timeout)
	return 0
}
