package builtins

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/studiorun/studiorun/builtins/dhcp"
	"github.com/studiorun/studiorun/builtins/libvirt"
	"github.com/studiorun/studiorun/runtime/apply"
)

// DriverOptions configure the drivers of an apply.
type DriverOptions struct {
	LibvirtURI string // --libvirt-uri
	Root       string // the project root: relative paths in specs start there
}

// Router gives each kind its driver, creating each driver once, when a
// plan first needs it (a plan without libvirt resources never connects).
type Router struct {
	opts    DriverOptions
	mu      sync.Mutex
	libvirt *libvirt.Driver
	dhcp    *dhcp.Driver
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
	}
	if issue, ok := pendingDrivers[module]; ok {
		return nil, fmt.Errorf("the %s driver is not built yet (%s)", module, issue)
	}
	return nil, fmt.Errorf("no driver for %s", kind)
}

func (rt *Router) libvirtDriver() apply.Driver {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.libvirt == nil {
		rt.libvirt = libvirt.NewDriver(rt.opts.LibvirtURI, rt.opts.Root)
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
	return errors.Join(errs...)
}
