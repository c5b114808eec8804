package builtins

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/studiorun/studiorun/builtins/dhcp"
	"github.com/studiorun/studiorun/builtins/libvirt"
	"github.com/studiorun/studiorun/builtins/qemu"
	"github.com/studiorun/studiorun/builtins/ssh"
	"github.com/studiorun/studiorun/runtime"
	"github.com/studiorun/studiorun/runtime/apply"
)

// DriverOptions configure the drivers of an apply.
type DriverOptions struct {
	LibvirtURI string // --libvirt-uri
	Root       string // the project root: relative paths in specs start there
	// SSH configures the connections to hosts (known_hosts, new keys).
	SSH ssh.Options
	// ForceImages rebuilds images whose inputs are unchanged (--force).
	ForceImages bool
}

// Router gives each kind its driver, creating each driver once, when a
// plan first needs it (a plan without libvirt resources never connects).
// The libvirt kinds, and the dhcp.reservations of libvirt networks, go to
// one libvirt.Driver per hypervisor URI (see hypervisors).
type Router struct {
	opts    DriverOptions
	mu      sync.Mutex
	libvirt *hypervisors
	dhcp    *dhcp.Driver
	ssh     *ssh.Driver
	qemu    *qemu.Driver
}

// NewRouter returns the router of an apply.
func NewRouter(opts DriverOptions) *Router { return &Router{opts: opts} }

// Route implements apply.Router. A dhcp.reservation goes to the driver of
// its network: libvirt's for a libvirt.network, dhcp's for a hosts file.
func (rt *Router) Route(kind string, attrs json.RawMessage) (apply.Driver, error) {
	module, _, _ := strings.Cut(kind, ".")
	switch {
	case module == "libvirt":
		return rt.libvirtDriver(), nil
	case kind == "dhcp.reservation":
		var r struct {
			Network string `json:"network"`
		}
		if err := json.Unmarshal(attrs, &r); err != nil {
			return nil, fmt.Errorf("read reservation: %w", err)
		}
		if strings.HasPrefix(r.Network, "libvirt.network.") {
			return rt.libvirtDriver(), nil
		}
		return rt.dhcpDriver(), nil
	case kind == "dhcp.hosts_file":
		return rt.dhcpDriver(), nil
	case module == "ssh", module == "nfs":
		return rt.sshDriver(), nil
	case kind == "qemu.image":
		return rt.qemuDriver(), nil
	}
	return nil, fmt.Errorf("no driver for %s", kind)
}

// sshDriver returns the driver of hosts and their tasks (nfs's included).
func (rt *Router) sshDriver() *ssh.Driver {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.ssh == nil {
		rt.ssh = ssh.NewDriver(rt.opts.SSH)
	}
	return rt.ssh
}

// qemuDriver returns the image builder, which provisions its build VMs
// through the SSH driver.
func (rt *Router) qemuDriver() apply.Driver {
	provisioner := rt.sshDriver()
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.qemu == nil {
		rt.qemu = qemu.NewDriver(rt.opts.Root, qemu.Options{Force: rt.opts.ForceImages, Provisioner: provisioner})
	}
	return rt.qemu
}

func (rt *Router) libvirtDriver() apply.Driver {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.libvirt == nil {
		rt.libvirt = &hypervisors{opts: rt.opts, drivers: map[string]*libvirt.Driver{}}
	}
	return rt.libvirt
}

func (rt *Router) dhcpDriver() apply.Driver {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.dhcp == nil {
		rt.dhcp = dhcp.NewDriver(rt.opts.Root)
	}
	return rt.dhcp
}

// Close implements apply.Router.
func (rt *Router) Close() error {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	var errs []error
	if rt.libvirt != nil {
		errs = append(errs, rt.libvirt.Close())
	}
	if rt.dhcp != nil {
		errs = append(errs, rt.dhcp.Close())
	}
	if rt.qemu != nil {
		errs = append(errs, rt.qemu.Close())
	}
	if rt.ssh != nil {
		errs = append(errs, rt.ssh.Close())
	}
	return errors.Join(errs...)
}

// hypervisors is the apply.Driver of the libvirt kinds: it hands each
// resource to the libvirt.Driver of its hypervisor, created on first use,
// so each URI's connection is opened once. A resource's hypervisor is its
// "on" (a libvirt.hypervisor's URI), or the CLI's --libvirt-uri without
// one; a reservation's is its network's. An owned object is deleted on the
// hypervisor its state entry records, whatever the declaration or
// --libvirt-uri now say; a declaration moved to another hypervisor is
// replaced: deleted on the old one, created on the new.
type hypervisors struct {
	opts    DriverOptions
	mu      sync.Mutex
	plan    *runtime.Plan
	drivers map[string]*libvirt.Driver // by URI
}

var (
	_ apply.Driver             = (*hypervisors)(nil)
	_ apply.Container          = (*hypervisors)(nil)
	_ apply.DependencyReplacer = (*hypervisors)(nil)
)

// driver returns the libvirt.Driver of uri, creating it on first use.
func (h *hypervisors) driver(uri string) *libvirt.Driver {
	h.mu.Lock()
	defer h.mu.Unlock()
	d, ok := h.drivers[uri]
	if !ok {
		d = libvirt.NewDriver(uri, h.opts.Root)
		if h.plan != nil {
			d.SetPlan(h.plan)
		}
		h.drivers[uri] = d
	}
	return d
}

// SetPlan implements apply.Driver.
func (h *hypervisors) SetPlan(p *runtime.Plan) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.plan = p
	for _, d := range h.drivers {
		d.SetPlan(p)
	}
}

// orDefault maps the default placement ("") to --libvirt-uri.
func (h *hypervisors) orDefault(on string) string {
	if on == "" {
		return h.opts.LibvirtURI
	}
	return on
}

// HypervisorOf returns the URI of the hypervisor r is placed on; the
// engine records it in r's state entry.
func (h *hypervisors) HypervisorOf(r *runtime.Resource) string {
	if res, ok := r.Spec.(*dhcp.Reservation); ok {
		h.mu.Lock()
		p := h.plan
		h.mu.Unlock()
		if p != nil {
			if net := p.Resource(res.Network); net != nil {
				return h.orDefault(libvirt.HypervisorOf(net.Spec))
			}
		}
		return h.opts.LibvirtURI
	}
	return h.orDefault(libvirt.HypervisorOf(r.Spec))
}

// entryHypervisor returns the URI an owned object is on: the one its entry
// records, else (entries written before entries recorded it) its recorded
// spec's "on", its network's for a reservation, or --libvirt-uri.
func (h *hypervisors) entryHypervisor(e *apply.Entry) string {
	if e.Hypervisor != "" {
		return e.Hypervisor
	}
	var spec struct {
		On      string          `json:"on"`
		Network runtime.Address `json:"network"`
	}
	_ = json.Unmarshal(e.Spec, &spec)
	if e.Kind == "dhcp.reservation" {
		h.mu.Lock()
		p := h.plan
		h.mu.Unlock()
		if p != nil {
			if net := p.Resource(spec.Network); net != nil {
				return h.orDefault(libvirt.HypervisorOf(net.Spec))
			}
		}
	}
	return h.orDefault(spec.On)
}

// DependencyReplaced implements apply.DependencyReplacer.
func (h *hypervisors) DependencyReplaced(r *runtime.Resource, c *apply.Change, dep *runtime.Resource) {
	libvirt.DependencyReplaced(r, c, dep)
}

// ContainerOf implements apply.Container.
func (h *hypervisors) ContainerOf(e *apply.Entry) (runtime.Address, bool) {
	return libvirt.ContainerOf(e)
}

// Diff implements apply.Driver.
func (h *hypervisors) Diff(ctx context.Context, r *runtime.Resource, owned *apply.Entry) (*apply.Change, error) {
	uri := h.HypervisorOf(r)
	if owned == nil || h.entryHypervisor(owned) == uri {
		c, err := h.driver(uri).Diff(ctx, r, owned)
		if err == nil && c.Recovered != nil {
			c.Recovered.Hypervisor = uri
		}
		return c, err
	}
	// Owned on another hypervisor: the declaration moved (its on, or
	// --libvirt-uri for a resource without one). The object is created on
	// the new hypervisor, where the script owns nothing by that name yet,
	// after the old one is deleted.
	old := h.entryHypervisor(owned)
	c, err := h.driver(uri).Diff(ctx, r, nil)
	if err != nil {
		return nil, err
	}
	switch c.Action {
	case apply.Create:
		c.Action = apply.Replace
		c.Attrs = append([]apply.AttrChange{{Name: "on", Old: old, New: uri, ForcesReplace: true,
			Note: "moves to another hypervisor"}}, c.Attrs...)
		return c, nil
	case apply.NoOp:
		if c.Recovered == nil {
			return c, nil // an existing_* object: nothing is owned
		}
	}
	return nil, fmt.Errorf("%s: the state records it on %s, and the declaration places it on %s where it exists already; run down with the old placement, or remove one of them", r.Address, old, uri)
}

// Apply implements apply.Driver.
func (h *hypervisors) Apply(ctx context.Context, r *runtime.Resource, c *apply.Change, rep apply.Reporter) (*apply.Entry, error) {
	uri := h.HypervisorOf(r)
	en, err := h.driver(uri).Apply(ctx, r, c, rep)
	if en != nil {
		en.Hypervisor = uri
	}
	return en, err
}

// Delete implements apply.Driver.
func (h *hypervisors) Delete(ctx context.Context, e *apply.Entry, rep apply.Reporter) error {
	return h.driver(h.entryHypervisor(e)).Delete(ctx, e, rep)
}

// Close implements apply.Driver: it closes every hypervisor's connection.
func (h *hypervisors) Close() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	var errs []error
	for _, d := range h.drivers {
		errs = append(errs, d.Close())
	}
	return errors.Join(errs...)
}
