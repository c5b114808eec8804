package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	golibvirt "github.com/digitalocean/go-libvirt"
	"github.com/digitalocean/go-libvirt/socket/dialers"
	"libvirt.org/go/libvirtxml"

	"github.com/studiorun/studiorun/runtime/apply"
)

// The objects testdata/studio_two_hypervisors.star places on each host.
const (
	hvScript    = "testdata/studio_two_hypervisors.star"
	hv1Pool     = "hv1-render"
	hv1Volume   = "render-cache.qcow2"
	hv1Network  = "hv1-render"
	labPool     = "lab-images"
	labVolume   = "lab-dev-001.qcow2"
	labBase     = "lab-base.qcow2"
	labDomain   = "lab-dev-001"
	hv1URI      = "qemu:///system"
	labURI      = "test:///default"
	reservedMAC = "02:00:00:00:00:21"
)

// dialLibvirt opens a connection of the test's own, to read what
// studiorun did.
func dialLibvirt(t *testing.T, uri string) *golibvirt.Libvirt {
	t.Helper()
	l := golibvirt.NewWithDialer(dialers.NewLocal())
	if err := l.ConnectToURI(golibvirt.ConnectURI(uri)); err != nil {
		t.Fatalf("connect to %s: %v", uri, err)
	}
	t.Cleanup(func() { l.Disconnect() })
	return l
}

// freeSubnet returns a /24 (10.213.x.0, else 172.29.x.0, else
// 192.168.x.0) that no network of l and no address of this machine
// overlaps.
func freeSubnet(t *testing.T, l *golibvirt.Libvirt) string {
	t.Helper()
	var used []netip.Prefix
	nets, _, err := l.ConnectListAllNetworks(1, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nets {
		s, err := l.NetworkGetXMLDesc(n, 0)
		if err != nil {
			continue
		}
		var x libvirtxml.Network
		if x.Unmarshal(s) != nil {
			continue
		}
		for _, ip := range x.IPs {
			a, err := netip.ParseAddr(ip.Address)
			if err != nil {
				continue
			}
			bits := int(ip.Prefix)
			if m := net.ParseIP(ip.Netmask).To4(); m != nil {
				bits, _ = net.IPMask(m).Size()
			}
			if bits == 0 {
				bits = 24
			}
			if p, err := a.Prefix(bits); err == nil {
				used = append(used, p)
			}
		}
	}
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		// An address without a real prefix (0.0.0.0/0) would rule out
		// every subnet; it routes nothing of its own.
		if p, err := netip.ParsePrefix(a.String()); err == nil && p.Bits() >= 8 {
			used = append(used, p.Masked())
		}
	}
	for _, pattern := range []string{"10.213.%d.0/24", "172.29.%d.0/24", "192.168.%d.0/24"} {
		for x := 7; x < 250; x++ {
			p := netip.MustParsePrefix(fmt.Sprintf(pattern, x))
			free := true
			for _, u := range used {
				free = free && !u.Overlaps(p)
			}
			if free {
				return p.String()
			}
		}
	}
	t.Fatalf("no free /24 subnet on this machine; in use: %v", used)
	return ""
}

func poolExists(l *golibvirt.Libvirt, name string) bool {
	_, err := l.StoragePoolLookupByName(name)
	return err == nil
}

func volumeExists(l *golibvirt.Libvirt, pool, name string) bool {
	p, err := l.StoragePoolLookupByName(pool)
	if err != nil {
		return false
	}
	_, err = l.StorageVolLookupByName(p, name)
	return err == nil
}

func networkExists(l *golibvirt.Libvirt, name string) bool {
	_, err := l.NetworkLookupByName(name)
	return err == nil
}

func domainExists(l *golibvirt.Libvirt, name string) bool {
	_, err := l.DomainLookupByName(name)
	return err == nil
}

// removeHV1Objects deletes what the test may have left on qemu:///system
// (the test driver's objects go with its last connection).
func removeHV1Objects(l *golibvirt.Libvirt) {
	if n, err := l.NetworkLookupByName(hv1Network); err == nil {
		l.NetworkDestroy(n)
		l.NetworkUndefine(n)
	}
	if p, err := l.StoragePoolLookupByName(hv1Pool); err == nil {
		if v, err := l.StorageVolLookupByName(p, hv1Volume); err == nil {
			l.StorageVolDelete(v, 0)
		}
		l.StoragePoolDestroy(p)
		l.StoragePoolUndefine(p)
	}
}

// TestOnePlanTwoHypervisors applies one plan that places a pool, a volume,
// a NAT network and a DHCP reservation on qemu:///system and a pool,
// an overlay and a domain on test:///default: each object lands on its
// own host, the state records each entry's hypervisor, a plan after up has
// nothing to change, and down removes both sides.
func TestOnePlanTwoHypervisors(t *testing.T) {
	requireLibvirtd(t)
	holdTestDriver(t)
	hv1 := dialLibvirt(t, hv1URI)
	lab := dialLibvirt(t, labURI)
	if poolExists(hv1, hv1Pool) || networkExists(hv1, hv1Network) {
		t.Fatalf("qemu:///system already has a pool or network %s: a previous run left it; remove it (virsh net-destroy/net-undefine, pool-destroy/pool-undefine)", hv1Pool)
	}
	root := t.TempDir() // the state lands in this project, not in the repository
	if err := os.Mkdir(filepath.Join(root, ".git"), 0o755); err != nil {
		t.Fatal(err)
	}
	copyProject(t, root, hvScript)
	state := apply.StatePath(root, hvScript)
	poolDir := filepath.Join(t.TempDir(), "render")
	subnet := freeSubnet(t, hv1)
	flags := []string{"--var", "pool_dir=" + poolDir, "--var", "subnet=" + subnet, "--libvirt-uri", labURI}
	run := func(args ...string) (int, string) {
		code, out, errOut := studiorun(t, root, append(append([]string{hvScript}, args...), flags...)...)
		return code, out + errOut
	}
	t.Cleanup(func() {
		run("down", "--yes")
		removeHV1Objects(hv1)
	})

	if code, out := run("up", "--yes"); code != 0 {
		t.Fatalf("up: exit %d\n%s", code, out)
	}

	// Each object is on its own host, and only there.
	for _, c := range []struct {
		what   string
		on     bool
		exists bool
	}{
		{"pool " + hv1Pool + " on qemu:///system", true, poolExists(hv1, hv1Pool)},
		{"volume " + hv1Volume + " on qemu:///system", true, volumeExists(hv1, hv1Pool, hv1Volume)},
		{"network " + hv1Network + " on qemu:///system", true, networkExists(hv1, hv1Network)},
		{"pool " + labPool + " on test:///default", true, poolExists(lab, labPool)},
		{"volume " + labBase + " on test:///default", true, volumeExists(lab, labPool, labBase)},
		{"volume " + labVolume + " on test:///default", true, volumeExists(lab, labPool, labVolume)},
		{"domain " + labDomain + " on test:///default", true, domainExists(lab, labDomain)},
		{"pool " + labPool + " on qemu:///system", false, poolExists(hv1, labPool)},
		{"domain " + labDomain + " on qemu:///system", false, domainExists(hv1, labDomain)},
		{"pool " + hv1Pool + " on test:///default", false, poolExists(lab, hv1Pool)},
		{"network " + hv1Network + " on test:///default", false, networkExists(lab, hv1Network)},
	} {
		if c.exists != c.on {
			t.Errorf("%s: exists = %v, want %v", c.what, c.exists, c.on)
		}
	}
	// The reservation follows its network to qemu:///system.
	if n, err := hv1.NetworkLookupByName(hv1Network); err == nil {
		s, err := hv1.NetworkGetXMLDesc(n, 0)
		if err != nil {
			t.Fatal(err)
		}
		var x libvirtxml.Network
		if err := x.Unmarshal(s); err != nil {
			t.Fatal(err)
		}
		found := false
		for _, ip := range x.IPs {
			if ip.DHCP != nil {
				for _, h := range ip.DHCP.Hosts {
					found = found || h.MAC == reservedMAC
				}
			}
		}
		if !found {
			t.Errorf("network %s on qemu:///system has no DHCP host %s:\n%s", hv1Network, reservedMAC, s)
		}
	}
	// The state records each entry's hypervisor, so that down reaches it
	// whatever --libvirt-uri says.
	data, err := os.ReadFile(state)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Entries []apply.Entry `json:"entries"`
	}
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"libvirt.pool." + hv1Pool:          hv1URI,
		"libvirt.volume." + hv1Volume:      hv1URI,
		"libvirt.network." + hv1Network:    hv1URI,
		"dhcp.reservation.render-021":      hv1URI,
		"libvirt.pool." + labPool:          labURI,
		"libvirt.volume." + labBase:        labURI,
		"libvirt.volume." + labVolume:      labURI,
		"libvirt.domain." + labDomain:      labURI,
		"libvirt.existing_network.default": "", // not owned: not recorded
	}
	got := map[string]string{}
	for _, e := range f.Entries {
		got[string(e.Address)] = e.Hypervisor
	}
	for addr, uri := range want {
		h, ok := got[addr]
		switch {
		case uri == "" && ok:
			t.Errorf("the state records %s, which the script does not own", addr)
		case uri != "" && (!ok || h != uri):
			t.Errorf("the state records %s on %q (recorded: %v), want %s", addr, h, ok, uri)
		}
	}

	if code, out := run("plan", "--detailed-exitcode"); code != 0 {
		t.Fatalf("plan after up: exit %d, want 0 (no changes)\n%s", code, out)
	}

	// down with another --libvirt-uri still deletes on each object's own
	// host: the entries say where.
	code, out, errOut := studiorun(t, root, hvScript, "down", "--yes", "--var", "pool_dir="+poolDir, "--var", "subnet="+subnet, "--libvirt-uri", hv1URI)
	if code != 0 {
		t.Fatalf("down: exit %d\n%s%s", code, out, errOut)
	}
	for _, c := range []struct {
		what   string
		exists bool
	}{
		{"pool " + hv1Pool + " on qemu:///system", poolExists(hv1, hv1Pool)},
		{"network " + hv1Network + " on qemu:///system", networkExists(hv1, hv1Network)},
		{"pool " + labPool + " on test:///default", poolExists(lab, labPool)},
		{"volume " + labVolume + " on test:///default", volumeExists(lab, labPool, labVolume)},
		{"domain " + labDomain + " on test:///default", domainExists(lab, labDomain)},
	} {
		if c.exists {
			t.Errorf("after down, %s still exists", c.what)
		}
	}
	if !networkExists(lab, "default") {
		t.Error("down deleted the test driver's network default, which the script only uses")
	}
	data, err = os.ReadFile(state)
	if err != nil {
		t.Fatal(err)
	}
	f.Entries = nil
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatal(err)
	}
	if len(f.Entries) != 0 {
		t.Errorf("down left %d owned object(s) in the state:\n%s", len(f.Entries), data)
	}
}

// TestDefaultHypervisorIsRecorded: a resource without on is on
// --libvirt-uri, and the state records that URI, so a down run with
// another --libvirt-uri still deletes it where it is.
func TestDefaultHypervisorIsRecorded(t *testing.T) {
	requireLibvirtd(t)
	holdTestDriver(t)
	lab := dialLibvirt(t, labURI)
	hv1 := dialLibvirt(t, hv1URI)
	const pool = "studiorun-default-hv"
	if poolExists(lab, pool) || poolExists(hv1, pool) {
		t.Fatalf("a pool %s exists already: a previous run left it", pool)
	}
	root := t.TempDir()
	if err := os.Mkdir(filepath.Join(root, ".studiorun"), 0o755); err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(root, "default.star")
	if err := os.WriteFile(script, []byte(`libvirt.pool("`+pool+`", path = "/studiorun/default-hv")`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { studiorun(t, root, "default.star", "down", "--yes", "--libvirt-uri", labURI) })
	if code, out, errOut := studiorun(t, root, "default.star", "up", "--yes", "--libvirt-uri", labURI); code != 0 {
		t.Fatalf("up: exit %d\n%s%s", code, out, errOut)
	}
	if !poolExists(lab, pool) {
		t.Fatalf("pool %s is not on %s", pool, labURI)
	}
	data, err := os.ReadFile(apply.StatePath(root, "default.star"))
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Entries []apply.Entry `json:"entries"`
	}
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatal(err)
	}
	if len(f.Entries) != 1 || f.Entries[0].Hypervisor != labURI {
		t.Fatalf("state entries %+v, want one on %s", f.Entries, labURI)
	}
	if code, out, errOut := studiorun(t, root, "default.star", "down", "--yes", "--libvirt-uri", hv1URI); code != 0 {
		t.Fatalf("down with --libvirt-uri %s: exit %d\n%s%s", hv1URI, code, out, errOut)
	}
	if poolExists(lab, pool) {
		t.Errorf("down with --libvirt-uri %s left pool %s on %s, where the state records it", hv1URI, pool, labURI)
	}
}
