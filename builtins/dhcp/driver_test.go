package dhcp

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/studiorun/studiorun/runtime"
	"github.com/studiorun/studiorun/runtime/apply"
)

func hostsFileResource(path string) *runtime.Resource {
	return &runtime.Resource{
		Address: "dhcp.hosts_file.site", Name: "site",
		Spec: &HostsFile{Path: path, Subnet: runtime.Subnet(netip.MustParsePrefix("192.168.10.0/24"))},
	}
}

func reservationResource(mac, ip, host string) *runtime.Resource {
	return &runtime.Resource{
		Address: runtime.Address("dhcp.reservation." + host), Name: host,
		Spec: &Reservation{Network: "dhcp.hosts_file.site", MAC: runtime.MAC(mac), IP: runtime.IP(netip.MustParseAddr(ip)), Hostname: host},
	}
}

func readBody(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimPrefix(string(b), "# written by studiorun: changes here are overwritten\n")
}

// run diffs and applies a resource as the engine does and returns the
// change and the entry.
func run(t *testing.T, d *Driver, r *runtime.Resource, owned *apply.Entry) (*apply.Change, *apply.Entry) {
	t.Helper()
	ctx := context.Background()
	c, err := d.Diff(ctx, r, owned)
	if err != nil {
		t.Fatalf("diff %s: %v", r.Address, err)
	}
	if c.Action == apply.NoOp {
		return c, owned
	}
	e, err := d.Apply(ctx, r, c, nil)
	if err != nil {
		t.Fatalf("apply %s: %v", r.Address, err)
	}
	attrs, _ := r.Attributes()
	e.Spec = attrs
	return c, e
}

func TestHostsFileDriver(t *testing.T) {
	root := t.TempDir()
	d := NewDriver(root)
	hf := hostsFileResource("dhcp/site.hosts")
	p := filepath.Join(root, "dhcp", "site.hosts")

	c, hfEntry := run(t, d, hf, nil)
	if c.Action != apply.Create || hfEntry.ID != p {
		t.Fatalf("hosts file: %s, id %q; want create of %s", c.Action, hfEntry.ID, p)
	}
	if c, _ := run(t, d, hf, hfEntry); c.Action != apply.NoOp {
		t.Errorf("hosts file again: %s, want no-op", c.Action)
	}

	a := reservationResource("02:00:00:00:00:02", "192.168.10.12", "vfx-b")
	b := reservationResource("02:00:00:00:00:01", "192.168.10.11", "vfx-a")
	_, ea := run(t, d, a, nil)
	_, eb := run(t, d, b, nil)
	if got, want := readBody(t, p), "02:00:00:00:00:01,192.168.10.11,vfx-a\n02:00:00:00:00:02,192.168.10.12,vfx-b\n"; got != want {
		t.Errorf("dhcp-hosts =\n%s\nwant\n%s", got, want)
	}
	if got, want := readBody(t, HostsPath(p)), "192.168.10.11 vfx-a\n192.168.10.12 vfx-b\n"; got != want {
		t.Errorf("hosts =\n%s\nwant\n%s", got, want)
	}
	if c, _ := run(t, d, a, ea); c.Action != apply.NoOp {
		t.Errorf("reservation again: %s, want no-op", c.Action)
	}

	// A changed IP is an update that replaces the line in both files.
	a2 := reservationResource("02:00:00:00:00:02", "192.168.10.22", "vfx-b")
	c, ea = run(t, d, a2, ea)
	if c.Action != apply.Update {
		t.Errorf("changed IP: %s, want update", c.Action)
	}
	if got, want := readBody(t, p), "02:00:00:00:00:01,192.168.10.11,vfx-a\n02:00:00:00:00:02,192.168.10.22,vfx-b\n"; got != want {
		t.Errorf("dhcp-hosts after update =\n%s\nwant\n%s", got, want)
	}
	if got, want := readBody(t, HostsPath(p)), "192.168.10.11 vfx-a\n192.168.10.22 vfx-b\n"; got != want {
		t.Errorf("hosts after update =\n%s\nwant\n%s", got, want)
	}

	// Delete removes the reservation's lines only.
	if err := d.Delete(context.Background(), eb, nil); err != nil {
		t.Fatal(err)
	}
	if got, want := readBody(t, p), "02:00:00:00:00:02,192.168.10.22,vfx-b\n"; got != want {
		t.Errorf("dhcp-hosts after delete =\n%s\nwant\n%s", got, want)
	}
	if got, want := readBody(t, HostsPath(p)), "192.168.10.22 vfx-b\n"; got != want {
		t.Errorf("hosts after delete =\n%s\nwant\n%s", got, want)
	}
	if err := d.Delete(context.Background(), ea, nil); err != nil {
		t.Fatal(err)
	}
	if err := d.Delete(context.Background(), hfEntry, nil); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{p, HostsPath(p)} {
		if _, err := os.Stat(f); !os.IsNotExist(err) {
			t.Errorf("%s survived delete: %v", f, err)
		}
	}
	entries, _ := os.ReadDir(filepath.Dir(p))
	if len(entries) != 0 {
		t.Errorf("left behind: %v", entries)
	}
}

func TestHostsFileNotOursIsRefused(t *testing.T) {
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "site.hosts"), []byte("x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := NewDriver(root).Diff(context.Background(), hostsFileResource("site.hosts"), nil)
	if err == nil || !strings.Contains(err.Error(), "exists that studiorun did not create") {
		t.Errorf("diff = %v, want a refusal", err)
	}
}
