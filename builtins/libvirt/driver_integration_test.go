package libvirt_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	golibvirt "github.com/digitalocean/go-libvirt"
	"libvirt.org/go/libvirtxml"

	"github.com/studiorun/studiorun/builtins/libvirt"
	"github.com/studiorun/studiorun/runtime"
	"github.com/studiorun/studiorun/runtime/apply"
)

const testURI = "test:///default"

// studioScript is a small studio on test:///default: a pool, a blank base
// and an overlay on it, a NAT network with a reservation, and a domain.
func studioScript(memory int, ip string, withSecondNIC bool) string {
	return studioScriptWith(memory, 2048, 1, ip, withSecondNIC)
}

func studioScriptWith(memory, maxMemory, vcpu int, ip string, withSecondNIC bool) string {
	nics := `[libvirt.nic(network = net, mac = "02:00:00:aa:00:01")]`
	if withSecondNIC {
		nics = `[libvirt.nic(network = net, mac = "02:00:00:aa:00:01"), libvirt.nic(network = net, mac = "02:00:00:aa:00:02")]`
	}
	return fmt.Sprintf(`
s = "%[1]s"
p = libvirt.pool("studiorun-test-pool-" + s, path = "/tmp/studiorun-test-pool-" + s)
base = libvirt.volume("studiorun-test-base-" + s, pool = p, size = "1GiB")
disk = libvirt.volume("studiorun-test-disk-" + s, pool = p, base = base, size = "2GiB")
net = libvirt.network("studiorun-test-net-" + s, subnet = "10.251.7.0/24", dhcp_range = ("10.251.7.100", "10.251.7.200"), domain = "studio.test")
dhcp.reservation(net, mac = "02:00:00:aa:00:01", ip = "%[3]s", hostname = "studiorun-test-h1-" + s)
libvirt.domain("studiorun-test-dom-" + s, vcpu = %[6]d, max_vcpu = 4, memory = %[2]d, max_memory = %[5]d,
    disks = [disk], nics = %[4]s, shutdown_timeout = "5s")
`, suffix, memory, ip, nics, maxMemory, vcpu)
}

func resourceOf(t *testing.T, plan *runtime.Plan, kind, prefix string) *runtime.Resource {
	t.Helper()
	r := plan.Resource(runtime.Address(kind + "." + prefix + suffix))
	if r == nil {
		t.Fatalf("no %s.%s%s in the plan", kind, prefix, suffix)
	}
	return r
}

// networkHosts returns the DHCP and DNS host entries of a network's live
// and persistent definitions, as "mac,ip,name" and "ip name".
func networkHosts(t *testing.T, l *golibvirt.Libvirt, name string, flags uint32) (dhcpHosts, dnsHosts []string) {
	t.Helper()
	n, err := l.NetworkLookupByName(name)
	if err != nil {
		t.Fatal(err)
	}
	s, err := l.NetworkGetXMLDesc(n, flags)
	if err != nil {
		t.Fatal(err)
	}
	var x libvirtxml.Network
	if err := x.Unmarshal(s); err != nil {
		t.Fatal(err)
	}
	for _, ip := range x.IPs {
		if ip.DHCP != nil {
			for _, h := range ip.DHCP.Hosts {
				dhcpHosts = append(dhcpHosts, h.MAC+","+h.IP+","+h.Name)
			}
		}
	}
	if x.DNS != nil {
		for _, h := range x.DNS.Host {
			for _, hn := range h.Hostnames {
				dnsHosts = append(dnsHosts, h.IP+" "+hn.Hostname)
			}
		}
	}
	return dhcpHosts, dnsHosts
}

func TestDriverConvergesOnTestDriver(t *testing.T) {
	needLibvirt(t)
	root := t.TempDir()
	d := newDriver(t, testURI, root)
	l := connect(t, testURI)
	st := state{}
	rep := &reporter{}

	plan := evalScript(t, root, studioScript(512, "10.251.7.10", false))
	changes := st.up(t, d, plan, rep)
	for _, r := range plan.Resources {
		if changes[r.Address].Action != apply.Create {
			t.Errorf("%s: first up %s, want create", r.Address, changes[r.Address].Action)
		}
	}
	st.allNoOp(t, d, plan)

	dom := resourceOf(t, plan, "libvirt.domain", "studiorun-test-dom-")
	domBefore, err := l.DomainLookupByName(dom.Name)
	if err != nil {
		t.Fatal(err)
	}
	if st[dom.Address].ID == "" {
		t.Errorf("%s: the entry has no UUID", dom.Address)
	}
	netName := "studiorun-test-net-" + suffix
	host := "02:00:00:aa:00:01,10.251.7.10,studiorun-test-h1-" + suffix
	for _, flags := range networkXMLFlags(testURI) {
		dh, dns := networkHosts(t, l, netName, flags)
		if jsonOf(dh) != jsonOf([]string{host}) || jsonOf(dns) != jsonOf([]string{"10.251.7.10 studiorun-test-h1-" + suffix}) {
			t.Errorf("network hosts (flags %d) = %v %v, want %s", flags, dh, dns, host)
		}
	}

	t.Run("memory change is an in-place update", func(t *testing.T) {
		plan2 := evalScript(t, root, studioScript(1024, "10.251.7.10", false))
		c := st.diff(t, d, plan2.Resource(dom.Address))
		if c.Action != apply.Update || len(c.Attrs) != 1 || c.Attrs[0].Name != "memory" || c.Attrs[0].ForcesReplace {
			t.Fatalf("diff = %s %s, want an update of memory", c.Action, jsonOf(c.Attrs))
		}
		st.up(t, d, plan2, rep)
		after, err := l.DomainLookupByName(dom.Name)
		if err != nil {
			t.Fatal(err)
		}
		if after.UUID != domBefore.UUID || after.ID != domBefore.ID {
			t.Errorf("domain changed identity: id %d uuid %x, was id %d uuid %x", after.ID, after.UUID, domBefore.ID, domBefore.UUID)
		}
		_, _, memKiB, _, _, err := l.DomainGetInfo(after)
		if err != nil || memKiB != 1024<<10 {
			t.Errorf("live memory = %d KiB, %v; want %d", memKiB, err, 1024<<10)
		}
		st.allNoOp(t, d, plan2)
	})

	t.Run("vcpu within max is live, memory above max is for the next boot", func(t *testing.T) {
		plan2 := evalScript(t, root, studioScriptWith(3072, 4096, 2, "10.251.7.10", false))
		c := st.diff(t, d, plan2.Resource(dom.Address))
		notes := map[string]string{}
		for _, a := range c.Attrs {
			if a.ForcesReplace {
				t.Errorf("%s forces a replace", a.Name)
			}
			notes[a.Name] = a.Note
		}
		want := map[string]string{"max_memory": "takes effect at next boot", "memory": "takes effect at next boot", "vcpu": ""}
		if c.Action != apply.Update || jsonOf(notes) != jsonOf(want) {
			t.Fatalf("diff = %s %s, want an update with notes %v", c.Action, jsonOf(c.Attrs), want)
		}
		st.up(t, d, plan2, rep)
		after, _ := l.DomainLookupByName(dom.Name)
		_, _, _, nvcpu, _, err := l.DomainGetInfo(after)
		if err != nil || nvcpu != 2 || after.UUID != domBefore.UUID {
			t.Errorf("live vcpus = %d, %v; want 2 on the same domain", nvcpu, err)
		}
		st.allNoOp(t, d, plan2)
		// Back to 1024 MiB, 1 vCPU, max 2048 for the next steps.
		st.up(t, d, evalScript(t, root, studioScript(1024, "10.251.7.10", false)), rep)
	})

	t.Run("a NIC is hot-plugged with its MAC", func(t *testing.T) {
		plan3 := evalScript(t, root, studioScript(1024, "10.251.7.10", true))
		c := st.diff(t, d, plan3.Resource(dom.Address))
		if c.Action != apply.Update {
			t.Fatalf("diff = %s %s, want an update", c.Action, jsonOf(c.Attrs))
		}
		st.up(t, d, plan3, rep)
		st.allNoOp(t, d, plan3)
		after, _ := l.DomainLookupByName(dom.Name)
		if after.UUID != domBefore.UUID {
			t.Errorf("domain was replaced")
		}
	})

	t.Run("reservation IP change updates the network live and persistently", func(t *testing.T) {
		plan4 := evalScript(t, root, studioScript(1024, "10.251.7.11", true))
		res := resourceOf(t, plan4, "dhcp.reservation", "studiorun-test-h1-")
		c := st.diff(t, d, res)
		if c.Action != apply.Update || c.Attrs[0].Name != "ip" {
			t.Fatalf("diff = %s %s, want an update of ip", c.Action, jsonOf(c.Attrs))
		}
		st.up(t, d, plan4, rep)
		for _, flags := range networkXMLFlags(testURI) {
			dh, dns := networkHosts(t, l, netName, flags)
			want := "02:00:00:aa:00:01,10.251.7.11,studiorun-test-h1-" + suffix
			if jsonOf(dh) != jsonOf([]string{want}) || jsonOf(dns) != jsonOf([]string{"10.251.7.11 studiorun-test-h1-" + suffix}) {
				t.Errorf("network hosts (flags %d) = %v %v, want %s", flags, dh, dns, want)
			}
		}
		st.allNoOp(t, d, plan4)
		// Deleting the reservation removes both entries.
		if err := d.Delete(context.Background(), st[res.Address], nil); err != nil {
			t.Fatal(err)
		}
		delete(st, res.Address)
		for _, flags := range networkXMLFlags(testURI) {
			if dh, dns := networkHosts(t, l, netName, flags); len(dh)+len(dns) != 0 {
				t.Errorf("after delete, network hosts (flags %d) = %v %v, want none", flags, dh, dns)
			}
		}
		if c := st.diff(t, d, res); c.Action != apply.Create {
			t.Errorf("diff after delete = %s, want create", c.Action)
		}
	})

	t.Run("lost state: the metadata of the domain and the network makes them ours", func(t *testing.T) {
		for _, r := range []*runtime.Resource{dom, resourceOf(t, plan, "libvirt.network", "studiorun-test-net-")} {
			c, err := d.Diff(context.Background(), r, nil)
			if err != nil {
				t.Fatalf("%s: diff without state: %v", r.Address, err)
			}
			if c.Action == apply.Create {
				t.Errorf("%s: diff without state = create, want the existing object recognised", r.Address)
			}
		}
	})

	t.Run("another declaration's network is refused", func(t *testing.T) {
		other := evalScript(t, t.TempDir(), fmt.Sprintf(`libvirt.network("studiorun-test-net-%s", subnet = "10.251.7.0/24")`, suffix))
		r := *other.Resources[0]
		r.Address = "libvirt.network.elsewhere"
		_, err := d.Diff(context.Background(), &r, nil)
		if err == nil || !strings.Contains(err.Error(), "belongs to libvirt.network.studiorun-test-net-"+suffix) {
			t.Errorf("diff = %v, want a refusal naming the owner", err)
		}
	})

	t.Run("a pool or volume not in the state is refused", func(t *testing.T) {
		for _, r := range []*runtime.Resource{
			resourceOf(t, plan, "libvirt.pool", "studiorun-test-pool-"),
			resourceOf(t, plan, "libvirt.volume", "studiorun-test-disk-"),
		} {
			_, err := d.Diff(context.Background(), r, nil)
			if err == nil || !strings.Contains(err.Error(), "that studiorun did not create") {
				t.Errorf("%s: diff without state: %v, want a refusal", r.Address, err)
			}
		}
	})

	t.Run("delete removes everything", func(t *testing.T) {
		st.down(t, d, plan, rep)
		if _, err := l.DomainLookupByName(dom.Name); err == nil {
			t.Errorf("domain %s survived delete", dom.Name)
		}
		if _, err := l.NetworkLookupByName(netName); err == nil {
			t.Errorf("network %s survived delete", netName)
		}
		if _, err := l.StoragePoolLookupByName("studiorun-test-pool-" + suffix); err == nil {
			t.Errorf("pool survived delete")
		}
		for _, r := range plan.Resources {
			if c := st.diff(t, d, r); c.Action != apply.Create {
				t.Errorf("%s: diff after down = %s, want create", r.Address, c.Action)
			}
		}
	})
}

func TestForeignDomainIsRefusedAndSurvives(t *testing.T) {
	needLibvirt(t)
	root := t.TempDir()
	d := newDriver(t, testURI, root)
	l := connect(t, testURI)
	name := "studiorun-test-foreign-" + suffix
	x := &libvirtxml.Domain{
		Type: "test", Name: name,
		Memory: &libvirtxml.DomainMemory{Value: 64, Unit: "MiB"},
		OS:     &libvirtxml.DomainOS{Type: &libvirtxml.DomainOSType{Type: "hvm"}},
	}
	doc, err := x.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := l.DomainDefineXMLFlags(doc, 0)
	if err != nil {
		t.Fatal(err)
	}
	plan := evalScript(t, root, fmt.Sprintf(`libvirt.domain(%q, memory = 128)`, name))
	r := plan.Resources[0]
	_, err = d.Diff(context.Background(), r, nil)
	want := fmt.Sprintf("libvirt.domain.%s: a domain %s exists that studiorun did not create; remove it or rename the declaration", name, name)
	if err == nil || err.Error() != want {
		t.Fatalf("diff = %v, want %q", err, want)
	}
	// An entry for another domain of that name (its UUID) does not make
	// this one ours: delete leaves it alone.
	if err := d.Delete(context.Background(), &apply.Entry{Address: r.Address, Kind: r.Kind(), Name: name, ID: "00000000-0000-0000-0000-000000000001"}, nil); err != nil {
		t.Fatal(err)
	}
	if err := d.Delete(context.Background(), &apply.Entry{Address: r.Address, Kind: r.Kind(), Name: name}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := l.DomainLookupByUUID(foreign.UUID); err != nil {
		t.Errorf("the foreign domain did not survive: %v", err)
	}
}

func TestExistingObjects(t *testing.T) {
	needLibvirt(t)
	root := t.TempDir()
	d := newDriver(t, testURI, root)
	plan := evalScript(t, root, `
libvirt.existing_network("default")
libvirt.existing_pool("default-pool")
libvirt.existing_network("studiorun-test-missing-`+suffix+`")
`)
	for _, r := range plan.Resources {
		c, err := d.Diff(context.Background(), r, nil)
		if strings.Contains(r.Name, "missing") {
			if err == nil || !strings.Contains(err.Error(), "does not exist") {
				t.Errorf("%s: %v, want an error naming it", r.Address, err)
			}
			continue
		}
		if err != nil || c.Action != apply.NoOp {
			t.Errorf("%s: %v %v, want no-op", r.Address, c, err)
		}
	}
}

// networkXMLFlags are the network XML flags to check: the live and the
// persistent definition, or only the live one on the test driver, which
// refuses VIR_NETWORK_XML_INACTIVE.
func networkXMLFlags(uri string) []uint32 {
	if strings.HasPrefix(uri, "test:") {
		return []uint32{0}
	}
	return []uint32{0, uint32(golibvirt.NetworkXMLInactive)}
}

// TestChangedImageReplacesItsOverlays diffs as the engine does in a new
// process: a fresh driver, no SetPlan, every Diff in its own goroutine
// started in plan order. A changed source image replaces its volume and
// the overlay on it.
func TestChangedImageReplacesItsOverlays(t *testing.T) {
	needLibvirt(t)
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "base.img"), []byte("image one"), 0o644); err != nil {
		t.Fatal(err)
	}
	script := fmt.Sprintf(`
s = "%s"
p = libvirt.pool("studiorun-test-ipool-" + s, path = "/tmp/studiorun-test-ipool-" + s)
base = libvirt.volume("studiorun-test-ibase-" + s, pool = p, source = "base.img", format = "raw")
libvirt.volume("studiorun-test-iover-" + s, pool = p, base = base)
`, suffix)
	plan := evalScript(t, root, script)
	st := state{}
	rep := &reporter{}
	st.up(t, newDriver(t, testURI, root), plan, rep)
	if len(rep.notes) == 0 || !strings.Contains(rep.notes[0], "upload of 9 bytes skipped") {
		t.Errorf("notes = %v, want the test driver's skipped upload", rep.notes)
	}

	parallelDiff := func() map[runtime.Address]*apply.Change {
		d := libvirt.NewDriver(testURI, root)
		defer d.Close()
		d.SetPlan(plan)
		var mu sync.Mutex
		var wg sync.WaitGroup
		changes := map[runtime.Address]*apply.Change{}
		for _, r := range plan.Resources {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, err := d.Diff(context.Background(), r, st[r.Address])
				if err != nil {
					t.Errorf("diff %s: %v", r.Address, err)
					return
				}
				mu.Lock()
				changes[r.Address] = c
				mu.Unlock()
			}()
		}
		wg.Wait()
		return changes
	}
	for addr, c := range parallelDiff() {
		if c.Action != apply.NoOp {
			t.Errorf("%s: %s with an unchanged image, want no-op", addr, c.Action)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "base.img"), []byte("image two"), 0o644); err != nil {
		t.Fatal(err)
	}
	changes := parallelDiff()
	for _, prefix := range []string{"studiorun-test-ibase-", "studiorun-test-iover-"} {
		c := changes[resourceOf(t, plan, "libvirt.volume", prefix).Address]
		if c == nil || c.Action != apply.Replace || !c.Attrs[0].ForcesReplace {
			t.Errorf("%s: %v, want a replace", prefix, jsonOf(c))
		}
	}
	if c := changes[resourceOf(t, plan, "libvirt.volume", "studiorun-test-ibase-").Address]; c != nil && c.Attrs[0].Note != "the image changed" {
		t.Errorf("base note = %q", c.Attrs[0].Note)
	}
}

func TestForeignNetworkIsRefusedAndSurvives(t *testing.T) {
	needLibvirt(t)
	root := t.TempDir()
	d := newDriver(t, testURI, root)
	l := connect(t, testURI)
	name := "studiorun-test-fnet-" + suffix
	doc, err := (&libvirtxml.Network{Name: name, IPs: []libvirtxml.NetworkIP{{Address: "10.251.8.1", Netmask: "255.255.255.0"}}}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := l.NetworkDefineXML(doc)
	if err != nil {
		t.Fatal(err)
	}
	plan := evalScript(t, root, fmt.Sprintf(`libvirt.network(%q, subnet = "10.251.8.0/24")`, name))
	r := plan.Resources[0]
	if _, err := d.Diff(context.Background(), r, nil); err == nil || !strings.Contains(err.Error(), "exists that studiorun did not create") {
		t.Fatalf("diff = %v, want a refusal", err)
	}
	for _, id := range []string{"", "00000000-0000-0000-0000-000000000002"} {
		if err := d.Delete(context.Background(), &apply.Entry{Address: r.Address, Kind: r.Kind(), Name: name, ID: id}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := l.NetworkLookupByUUID(foreign.UUID); err != nil {
		t.Errorf("the foreign network did not survive: %v", err)
	}
}
