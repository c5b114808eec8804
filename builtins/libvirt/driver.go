package libvirt

// The libvirt driver: pools, volumes, networks, domains and the DHCP
// reservations of libvirt networks, realised on libvirtd through
// go-libvirt, with XML built and read by libvirtxml. This file holds the
// connection, the routing by kind and the plan the driver resolves
// references in; each kind has its driver_<kind>.go.

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"

	golibvirt "github.com/digitalocean/go-libvirt"
	"libvirt.org/go/libvirtxml"

	"github.com/studiorun/studiorun/builtins/dhcp"
	"github.com/studiorun/studiorun/builtins/internal/kvm"
	"github.com/studiorun/studiorun/runtime"
	"github.com/studiorun/studiorun/runtime/apply"
)

// Driver implements apply.Driver for the libvirt.* kinds and for
// dhcp.reservation on a libvirt.network. It is safe for concurrent use.
type Driver struct {
	uri  string
	root string // the project root: relative volume sources are under it

	// DomainType is the <domain type> of the domains it defines: "test"
	// for test:/// URIs, else "kvm" when the hypervisor offers KVM and
	// "qemu" (software emulation) when it does not (see domainType).
	// Empty means decide on first use; set it before the first call to
	// force one.
	DomainType string

	typeMu   sync.Mutex // guards DomainType while it is decided
	connOnce sync.Once
	l        *golibvirt.Libvirt
	connErr  error

	mu        sync.Mutex
	resources map[runtime.Address]*runtime.Resource // every resource seen, for references
	hashes    map[string]fileHash                   // sha256 of local images by path
	netLocks  map[string]*sync.Mutex                // one NetworkUpdate at a time per network
}

var _ apply.Driver = (*Driver)(nil)

// NewDriver returns a driver for the libvirt at uri ("test:///default",
// "qemu:///system", "qemu+tcp://host/system", "qemu+ssh://user@host/system").
// root is the project root, against which relative volume sources are
// read. It connects on first use.
func NewDriver(uri, root string) *Driver {
	return &Driver{
		uri:       uri,
		root:      root,
		resources: map[runtime.Address]*runtime.Resource{},
		hashes:    map[string]fileHash{},
		netLocks:  map[string]*sync.Mutex{},
	}
}

// URI returns the libvirt URI the driver connects to.
func (d *Driver) URI() string { return d.uri }

// SetPlan implements apply.Driver: references (a disk's volume and its
// pool, an overlay's base) resolve through the plan's resources, whatever
// the order of the calls to Diff.
func (d *Driver) SetPlan(p *runtime.Plan) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, r := range p.Resources {
		d.resources[r.Address] = r
	}
}

// resource returns a resource of the plan, or nil.
func (d *Driver) resource(addr runtime.Address) *runtime.Resource {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.resources[addr]
}

// conn returns the connection, opening it on first use.
func (d *Driver) conn() (*golibvirt.Libvirt, error) {
	d.connOnce.Do(func() { d.l, d.connErr = dial(d.uri) })
	return d.l, d.connErr
}

// dial connects to the libvirt at uri: through SSH for qemu+ssh://,
// else as go-libvirt dials unix, tcp and tls itself.
func dial(uri string) (*golibvirt.Libvirt, error) {
	u, err := url.Parse(uri)
	if err != nil {
		return nil, fmt.Errorf("connect to libvirt at %s: %w", uri, err)
	}
	var l *golibvirt.Libvirt
	if strings.HasSuffix(u.Scheme, "+ssh") {
		l, err = connectSSH(u)
	} else {
		l, err = golibvirt.ConnectToURI(u)
	}
	if err != nil {
		return nil, fmt.Errorf("connect to libvirt at %s: %w", uri, err)
	}
	return l, nil
}

// Close disconnects from libvirt.
func (d *Driver) Close() error {
	if d.l == nil {
		return nil
	}
	if err := d.l.Disconnect(); err != nil {
		return fmt.Errorf("disconnect from libvirt at %s: %w", d.uri, err)
	}
	return nil
}

// domainType decides the <domain type> for the driver's URI: "test" on
// test:///, else STUDIORUN_DOMAIN_TYPE when set ("kvm" or "qemu"), else
// "kvm" when the hypervisor's capabilities offer it for x86_64 guests and
// it works, else "qemu", software emulation. libvirt offers kvm wherever
// /dev/kvm exists, also where nested KVM cannot run guests, so on a local
// hypervisor a probe guest decides (package kvm); a remote one is taken at
// its word. notice says why a domain falls back to software emulation, on
// the first call that decides it.
func (d *Driver) domainType(l *golibvirt.Libvirt) (typ, notice string) {
	d.typeMu.Lock()
	defer d.typeMu.Unlock()
	if d.DomainType != "" {
		return d.DomainType, ""
	}
	emulator, offered := hypervisorKVM(l)
	switch env := os.Getenv("STUDIORUN_DOMAIN_TYPE"); {
	case strings.HasPrefix(d.uri, "test:"):
		d.DomainType = "test"
	case env == "kvm" || env == "qemu":
		d.DomainType = env
	case !offered:
		d.DomainType = "qemu"
	case isRemote(d.uri) || !canOpenKVM():
		// Not ours to probe: a remote host, or a /dev/kvm that only
		// libvirt's qemu user may open.
		d.DomainType = "kvm"
	default:
		if st := kvm.Probe(context.Background(), emulator); st.OK {
			d.DomainType = "kvm"
		} else {
			d.DomainType = "qemu"
			notice = fmt.Sprintf("KVM does not work here (%s): domains run under software emulation (type qemu), several times slower; STUDIORUN_DOMAIN_TYPE=kvm forces KVM", st.Reason)
		}
	}
	return d.DomainType, notice
}

// hypervisorKVM reports whether libvirt's capabilities list a kvm domain
// type for x86_64 guests, and the emulator that would run them.
func hypervisorKVM(l *golibvirt.Libvirt) (emulator string, ok bool) {
	b, err := l.Capabilities()
	if err != nil {
		return "", false
	}
	var caps libvirtxml.Caps
	if err := caps.Unmarshal(string(b)); err != nil {
		return "", false
	}
	for _, g := range caps.Guests {
		if g.OSType != "hvm" || g.Arch.Name != "x86_64" {
			continue
		}
		for _, dom := range g.Arch.Domains {
			if dom.Type == "kvm" {
				emulator = g.Arch.Emulator
				if dom.Emulator != "" {
					emulator = dom.Emulator
				}
				if emulator == "" {
					emulator = "qemu-system-x86_64"
				}
				return emulator, true
			}
		}
	}
	return "", false
}

// isRemote reports whether a URI names another host.
func isRemote(uri string) bool {
	u, err := url.Parse(uri)
	return err == nil && u.Host != ""
}

// canOpenKVM reports whether this process may open /dev/kvm (to probe
// it): a missing one is no permission problem.
func canOpenKVM() bool {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return !os.IsPermission(err)
	}
	f.Close()
	return true
}

// Diff implements apply.Driver.
func (d *Driver) Diff(ctx context.Context, r *runtime.Resource, owned *apply.Entry) (*apply.Change, error) {
	l, err := d.conn()
	if err != nil {
		return nil, err
	}
	var c *apply.Change
	switch spec := r.Spec.(type) {
	case *Pool:
		c, err = d.diffPool(l, r, spec, owned)
	case *ExistingPool:
		c, err = d.diffExisting(l, r)
	case *Volume:
		c, err = d.diffVolume(l, r, spec, owned)
	case *ExistingVolume:
		c, err = d.diffExisting(l, r)
	case *Network:
		c, err = d.diffNetwork(l, r, spec, owned)
	case *ExistingNetwork:
		c, err = d.diffExisting(l, r)
	case *Domain:
		c, err = d.diffDomain(l, r, spec, owned)
	case *dhcp.Reservation:
		c, err = d.diffReservation(l, r, spec, owned)
	default:
		return nil, fmt.Errorf("%s: the libvirt driver does not handle %s", r.Address, r.Kind())
	}
	if err != nil {
		return nil, err
	}
	if owned != nil && owned.Incomplete && c.Action == apply.NoOp {
		finishInterrupted(r, c)
	}
	c.Address = r.Address
	return c, nil
}

// finishInterrupted turns a no-op on an object whose creation a killed run
// interrupted into the change that completes it: a volume is created again
// (its upload may be partial); the others are applied again, which starts
// what was defined but not started and records the object as complete.
func finishInterrupted(r *runtime.Resource, c *apply.Change) {
	if _, ok := r.Spec.(*Volume); ok {
		c.Action = apply.Replace
		c.Attrs = append(c.Attrs, apply.AttrChange{Name: "volume", ForcesReplace: true, Note: "its creation was interrupted: created again"})
		return
	}
	c.Action = apply.Update
	c.Attrs = append(c.Attrs, apply.AttrChange{Name: r.Kind(), Note: "its creation was interrupted: finished"})
}

// Apply implements apply.Driver.
func (d *Driver) Apply(ctx context.Context, r *runtime.Resource, c *apply.Change, rep apply.Reporter) (*apply.Entry, error) {
	l, err := d.conn()
	if err != nil {
		return nil, err
	}
	switch spec := r.Spec.(type) {
	case *Pool:
		return d.applyPool(l, r, spec, c)
	case *ExistingPool, *ExistingVolume, *ExistingNetwork:
		if c.Action != apply.NoOp {
			return nil, fmt.Errorf("%s: studiorun does not change objects it does not own", r.Address)
		}
		return nil, nil
	case *Volume:
		return d.applyVolume(ctx, l, r, spec, c, rep)
	case *Network:
		return d.applyNetwork(l, r, spec, c)
	case *Domain:
		return d.applyDomain(ctx, l, r, spec, c, rep)
	case *dhcp.Reservation:
		return d.applyReservation(l, r, spec, c)
	}
	return nil, fmt.Errorf("%s: the libvirt driver does not handle %s", r.Address, r.Kind())
}

// Delete implements apply.Driver.
func (d *Driver) Delete(ctx context.Context, e *apply.Entry, rep apply.Reporter) error {
	l, err := d.conn()
	if err != nil {
		return err
	}
	switch e.Kind {
	case "libvirt.pool":
		return d.deletePool(l, e)
	case "libvirt.volume":
		return d.deleteVolume(l, e)
	case "libvirt.network":
		return d.deleteNetwork(l, e)
	case "libvirt.domain":
		return d.deleteDomain(ctx, l, e, rep)
	case "dhcp.reservation":
		return d.deleteReservation(l, e)
	case "libvirt.existing_pool", "libvirt.existing_volume", "libvirt.existing_network":
		return nil // never ours to delete
	}
	return fmt.Errorf("%s: the libvirt driver does not handle %s", e.Address, e.Kind)
}

// diffExisting checks that an object the script uses but does not own
// exists.
func (d *Driver) diffExisting(l *golibvirt.Libvirt, r *runtime.Resource) (*apply.Change, error) {
	var err error
	what := ""
	switch spec := r.Spec.(type) {
	case *ExistingPool:
		what = "storage pool " + r.Name
		_, err = l.StoragePoolLookupByName(r.Name)
	case *ExistingNetwork:
		what = "network " + r.Name
		_, err = l.NetworkLookupByName(r.Name)
	case *ExistingVolume:
		pool := spec.Pool.Name()
		what = fmt.Sprintf("volume %s in pool %s", r.Name, pool)
		var p golibvirt.StoragePool
		if p, err = l.StoragePoolLookupByName(pool); err == nil {
			_, err = l.StorageVolLookupByName(p, r.Name)
		}
	}
	if isNotFound(err) {
		return nil, fmt.Errorf("%s: %s does not exist at %s; it is declared as existing, so studiorun does not create it", r.Address, what, d.uri)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: look up %s at %s: %w", r.Address, what, d.uri, err)
	}
	return &apply.Change{Action: apply.NoOp}, nil
}

// isNotFound reports whether err is libvirt's "no such object" for a
// domain, network, pool or volume.
func isNotFound(err error) bool {
	var e golibvirt.Error
	if !errors.As(err, &e) {
		return false
	}
	switch golibvirt.ErrorNumber(e.Code) {
	case golibvirt.ErrNoDomain, golibvirt.ErrNoNetwork, golibvirt.ErrNoStoragePool, golibvirt.ErrNoStorageVol:
		return true
	}
	return false
}

// entry returns the state entry of r with the driver's identifier.
func entry(r *runtime.Resource, id string) *apply.Entry {
	return &apply.Entry{Address: r.Address, Kind: r.Kind(), Name: r.Name, ID: id}
}
