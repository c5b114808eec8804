package libvirt_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
	"libvirt.org/go/libvirtxml"

	"github.com/studiorun/studiorun/builtins/internal/kvm"
	"github.com/studiorun/studiorun/runtime/apply"
)

const (
	guestMAC      = "02:00:00:00:00:01"
	guestHostname = "studiorun-test-guest"
	guestDomain   = "studiorun.test"
	leaseTimeout  = 90 * time.Second // CI has 2 cores and no KVM
)

// integrationSkip skips the test with its reason, or fails it under
// STUDIORUN_REQUIRE_INTEGRATION=1 (CI).
func integrationSkip(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("STUDIORUN_REQUIRE_INTEGRATION") == "1" {
		t.Fatalf("required (STUDIORUN_REQUIRE_INTEGRATION=1): "+format, args...)
	}
	t.Skipf(format, args...)
}

// buildGuest runs testdata/guest/build-initramfs.sh into a cache directory
// (it rebuilds only when its inputs changed) and copies the kernel and
// initramfs where qemu, running as its own user, can read them. It
// returns the paths of the copies.
func buildGuest(t *testing.T) (kernel, initrd string) {
	t.Helper()
	script, err := filepath.Abs("../../testdata/guest/build-initramfs.sh")
	if err != nil {
		t.Fatal(err)
	}
	cache := t.TempDir()
	if dir, err := os.UserCacheDir(); err == nil {
		cache = filepath.Join(dir, "studiorun", "guest")
	}
	start := time.Now()
	out, err := exec.Command("sh", script, cache).CombinedOutput()
	var exit *exec.ExitError
	if errors.As(err, &exit) && exit.ExitCode() == 3 {
		integrationSkip(t, "the test guest cannot be built: %s", strings.TrimSpace(string(out)))
	}
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", script, cache, err, out)
	}
	t.Logf("guest: %s in %s", strings.TrimSpace(string(out)), time.Since(start).Round(time.Millisecond))

	boot := "/var/lib/libvirt/images/studiorun-test-boot-" + suffix
	if err := os.MkdirAll(boot, 0o755); err != nil {
		integrationSkip(t, "cannot write the guest's kernel where qemu reads it: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(boot) })
	for _, name := range []string{"vmlinuz", "initramfs.img"} {
		data, err := os.ReadFile(filepath.Join(cache, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(boot, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(boot, "vmlinuz"), filepath.Join(boot, "initramfs.img")
}

// freeSubnet returns a 10.213.X.0/24 that no route of this machine
// overlaps (an address of its own, another libvirt network, a VPN).
func freeSubnet(t *testing.T) netip.Prefix {
	t.Helper()
	var routes []netip.Prefix
	if f, err := os.Open("/proc/net/route"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 8 || fields[0] == "Iface" {
				continue
			}
			dst, err1 := strconv.ParseUint(fields[1], 16, 32)
			mask, err2 := strconv.ParseUint(fields[7], 16, 32)
			if err1 != nil || err2 != nil || mask == 0 {
				continue
			}
			var d, m [4]byte
			binary.LittleEndian.PutUint32(d[:], uint32(dst))
			binary.LittleEndian.PutUint32(m[:], uint32(mask))
			bits := 0
			for _, b := range m {
				for ; b != 0; b <<= 1 {
					bits++
				}
			}
			routes = append(routes, netip.PrefixFrom(netip.AddrFrom4(d), bits).Masked())
		}
		f.Close()
	}
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().Is4() {
				routes = append(routes, p.Masked())
			}
		}
	}
	start := os.Getpid() % 200
	for i := 0; i < 200; i++ {
		x := byte(20 + (start+i)%200)
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 213, x, 0}), 24)
		free := true
		for _, r := range routes {
			free = free && !r.Overlaps(p)
		}
		if free {
			return p
		}
	}
	t.Fatalf("no free 10.213.X.0/24 beside the routes %v", routes)
	return netip.Prefix{}
}

// hostIn returns the n-th address of a /24.
func hostIn(p netip.Prefix, n byte) netip.Addr {
	a := p.Addr().As4()
	a[3] = n
	return netip.AddrFrom4(a)
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// checkDomainType checks that domain name is of type kvm where KVM runs
// guests here and of type qemu (software emulation) where it does not,
// as under a hypervisor without nested virtualisation, with a note that
// says why.
func checkDomainType(t *testing.T, l *golibvirt.Libvirt, name string, rep *reporter) {
	t.Helper()
	dom, err := l.DomainLookupByName(name)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := l.DomainGetXMLDesc(dom, 0)
	if err != nil {
		t.Fatal(err)
	}
	var x libvirtxml.Domain
	if err := x.Unmarshal(doc); err != nil {
		t.Fatal(err)
	}
	probe := kvm.Probe(context.Background(), "qemu-system-x86_64")
	want, note := "kvm", ""
	if !probe.OK {
		want, note = "qemu", "KVM does not work here ("+probe.Reason+"): domains run under software emulation"
	}
	t.Logf("KVM works here: %v (%s): domain type %s", probe.OK, probe.Reason, x.Type)
	if x.Type != want {
		t.Errorf("domain %s is of type %q, want %q", name, x.Type, want)
	}
	if note != "" && !slices.ContainsFunc(rep.notes, func(n string) bool { return strings.Contains(n, note) }) {
		t.Errorf("notes %q, want one saying %q", rep.notes, note)
	}
}

// TestGuestGetsItsReservedLease boots a tiny guest (a Debian kernel and a
// busybox initramfs, direct kernel boot, software emulation) on
// qemu:///system with MAC 02:00:00:00:00:01 on a network that reserves an
// address and a host name for that MAC: the guest's DHCP client gets the
// reserved address, NetworkGetDhcpLeases shows it with the host name, and
// the network's DNS answers the name with that address.
func TestGuestGetsItsReservedLease(t *testing.T) {
	needLibvirt(t)
	if _, err := os.Stat("/run/libvirt/virtlogd-sock"); err != nil {
		integrationSkip(t, "virtlogd is not running (start it with virtlogd -d): a guest cannot start: %v", err)
	}
	t.Setenv("STUDIORUN_DOMAIN_TYPE", "") // the driver decides: KVM where it works
	kernel, initrd := buildGuest(t)
	subnet := freeSubnet(t)
	gateway, reserved := hostIn(subnet, 1), hostIn(subnet, 10)
	netName := "studiorun-test-lease-" + suffix
	domName := "studiorun-test-lease-guest-" + suffix

	root := t.TempDir()
	d := newDriver(t, qemuURI, root)
	l := connect(t, qemuURI)
	st := state{}
	rep := &reporter{}
	script := fmt.Sprintf(`
net = libvirt.network(%q, subnet = %q, dhcp_range = (%q, %q), domain = %q, autostart = False)
dhcp.reservation(net, mac = %q, ip = %q, hostname = %q)
libvirt.domain(%q, memory = 256, vcpu = 1, nics = [libvirt.nic(network = net, mac = %q)],
    kernel = %q, initrd = %q, cmdline = "console=ttyS0 no_timer_check studiorun.hostname=%s",
    shutdown_timeout = "2s")
`, netName, subnet, hostIn(subnet, 100), hostIn(subnet, 200), guestDomain,
		guestMAC, reserved, guestHostname,
		domName, guestMAC, kernel, initrd, guestHostname)
	plan := evalScript(t, root, script)
	// Delete through the driver first (registered after newDriver's
	// cleanup, so it runs before it); the name-based cleanup then removes
	// whatever an early failure left.
	t.Cleanup(func() {
		for i := len(plan.Resources) - 1; i >= 0; i-- {
			if e, ok := st[plan.Resources[i].Address]; ok {
				if err := d.Delete(context.Background(), e, rep); err != nil {
					t.Errorf("delete %s: %v", e.Address, err)
				}
			}
		}
	})

	start := time.Now()
	st.up(t, d, plan, rep)
	applied := time.Since(start)
	checkDomainType(t, l, domName, rep)

	// The guest's console, for the log (and the reason of a failure).
	console := &syncBuffer{}
	cl := connect(t, qemuURI)
	if dom, err := cl.DomainLookupByName(domName); err == nil {
		go func() { _ = cl.DomainOpenConsole(dom, nil, console, 0) }()
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("guest console:\n%s", console.String())
			return
		}
		var lines []string
		for _, line := range strings.Split(console.String(), "\n") {
			if strings.HasPrefix(line, "studiorun-guest:") || strings.HasPrefix(line, "udhcpc:") {
				lines = append(lines, strings.TrimRight(line, "\r"))
			}
		}
		t.Logf("guest console (its DHCP client):\n%s", strings.Join(lines, "\n"))
	})

	lnet, err := l.NetworkLookupByName(netName)
	if err != nil {
		t.Fatal(err)
	}
	var lease *golibvirt.NetworkDhcpLease
	for lease == nil && time.Since(start) < leaseTimeout {
		leases, _, err := l.NetworkGetDhcpLeases(lnet, golibvirt.OptString{guestMAC}, 1, 0)
		if err != nil {
			t.Fatalf("NetworkGetDhcpLeases: %v", err)
		}
		for i := range leases {
			if len(leases[i].Mac) == 1 && strings.EqualFold(leases[i].Mac[0], guestMAC) {
				lease = &leases[i]
			}
		}
		if lease == nil {
			time.Sleep(250 * time.Millisecond)
		}
	}
	if lease == nil {
		t.Fatalf("no lease for %s on %s within %s", guestMAC, netName, leaseTimeout)
	}
	got := time.Since(start)
	hostname := ""
	if len(lease.Hostname) == 1 {
		hostname = lease.Hostname[0]
	}
	t.Logf("lease after %s (%s of it defining and starting): %s %s/%d hostname %q on %s",
		got.Round(100*time.Millisecond), applied.Round(100*time.Millisecond), guestMAC, lease.Ipaddr, lease.Prefix, hostname, lease.Iface)
	if lease.Ipaddr != reserved.String() {
		t.Errorf("lease address %s, want the reserved %s", lease.Ipaddr, reserved)
	}
	if hostname != guestHostname {
		t.Errorf("lease hostname %q, want %q", hostname, guestHostname)
	}

	// The definition read back has the kernel boot the plan declared: no
	// change to show (the guest may be off already: running may differ).
	domAddr := resourceOf(t, plan, "libvirt.domain", "studiorun-test-lease-guest-").Address
	for _, a := range st.diff(t, d, plan.Resource(domAddr)).Attrs {
		if a.Name == "kernel" || a.Name == "initrd" || a.Name == "cmdline" {
			t.Errorf("after up, %s: %q -> %q, want no change", a.Name, a.Old, a.New)
		}
	}

	// The network's DNS (dnsmasq on the gateway) answers the name.
	resolver := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var dialer net.Dialer
		return dialer.DialContext(ctx, network, net.JoinHostPort(gateway.String(), "53"))
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	fqdn := guestHostname + "." + guestDomain + "."
	addrs, err := resolver.LookupHost(ctx, fqdn)
	if err != nil || len(addrs) != 1 || addrs[0] != reserved.String() {
		t.Errorf("DNS %s at %s: %v %v, want %s", fqdn, gateway, addrs, err, reserved)
	} else {
		t.Logf("DNS %s at %s: %s", fqdn, gateway, addrs[0])
	}

	// The guest powers itself off once it has its lease.
	dom, err := l.DomainLookupByName(domName)
	if err != nil {
		t.Fatal(err)
	}
	for time.Since(start) < leaseTimeout {
		state, _, err := l.DomainGetState(dom, 0)
		if err != nil || golibvirt.DomainState(state) == golibvirt.DomainShutoff {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	if state, _, err := l.DomainGetState(dom, 0); err != nil || golibvirt.DomainState(state) != golibvirt.DomainShutoff {
		t.Errorf("the guest did not power off: state %d, %v", state, err)
	} else {
		t.Logf("guest powered off %s after create", time.Since(start).Round(100*time.Millisecond))
	}
	if !strings.Contains(console.String(), "studiorun-guest: bound eth0 ip="+reserved.String()) {
		t.Logf("the console did not show the lease (it is read from after the start)")
	}
}

// TestGuestKernelBootChangeIsForTheNextBoot changes the kernel command
// line of a running domain on test:///default: an update of the
// persistent definition, marked "takes effect at next boot", on the same
// domain, after which the plan is empty.
func TestGuestKernelBootChangeIsForTheNextBoot(t *testing.T) {
	needLibvirt(t)
	root := t.TempDir()
	d := newDriver(t, testURI, root)
	l := connect(t, testURI)
	st := state{}
	rep := &reporter{}
	script := func(cmdline string) string {
		return fmt.Sprintf(`libvirt.domain("studiorun-test-kboot-%s", memory = 128, kernel = "/var/lib/libvirt/boot/vmlinuz", cmdline = %q)`, suffix, cmdline)
	}
	plan := evalScript(t, root, script("console=ttyS0"))
	st.up(t, d, plan, rep)
	st.allNoOp(t, d, plan)
	r := resourceOf(t, plan, "libvirt.domain", "studiorun-test-kboot-")
	before, err := l.DomainLookupByName(r.Name)
	if err != nil {
		t.Fatal(err)
	}

	plan2 := evalScript(t, root, script("console=ttyS0 quiet"))
	c := st.diff(t, d, plan2.Resource(r.Address))
	want := `[{"name":"cmdline","old":"console=ttyS0","new":"console=ttyS0 quiet","note":"takes effect at next boot"}]`
	if c.Action != apply.Update || jsonOf(c.Attrs) != want {
		t.Fatalf("diff = %s %s, want an update %s", c.Action, jsonOf(c.Attrs), want)
	}
	st.up(t, d, plan2, rep)
	st.allNoOp(t, d, plan2)
	after, err := l.DomainLookupByName(r.Name)
	if err != nil || after.UUID != before.UUID || after.ID != before.ID {
		t.Errorf("the domain changed identity: %v", err)
	}
	st.down(t, d, plan2, rep)
}
