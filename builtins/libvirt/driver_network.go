package libvirt

import (
	"fmt"
	"strconv"

	golibvirt "github.com/digitalocean/go-libvirt"
	"libvirt.org/go/libvirtxml"

	"github.com/studiorun/studiorun/builtins/dhcp"
	"github.com/studiorun/studiorun/runtime"
	"github.com/studiorun/studiorun/runtime/apply"
)

// networkXML builds the definition of a network, with the DHCP and DNS
// host entries of the reservations on it that the driver knows of, so
// that a network created (or replaced) after its reservations were
// declared serves them at once.
func (d *Driver) networkXML(r *runtime.Resource, spec *Network) *libvirtxml.Network {
	p := spec.Subnet.Prefix()
	n := &libvirtxml.Network{
		Name:     r.Name,
		Metadata: &libvirtxml.NetworkMetadata{XML: ownerXML(r.Address)},
		IPs: []libvirtxml.NetworkIP{{
			Address: spec.Gateway.String(),
			Netmask: netmask(p),
		}},
	}
	if spec.Mode != "isolated" {
		n.Forward = &libvirtxml.NetworkForward{Mode: spec.Mode}
	}
	if spec.Bridge != "" {
		n.Bridge = &libvirtxml.NetworkBridge{Name: spec.Bridge, STP: "on", Delay: "0"}
	}
	if spec.Domain != "" {
		n.Domain = &libvirtxml.NetworkDomain{Name: spec.Domain, LocalOnly: "yes"}
	}
	if spec.DHCPRange != nil {
		n.IPs[0].DHCP = &libvirtxml.NetworkDHCP{Ranges: []libvirtxml.NetworkDHCPRange{{
			Start: spec.DHCPRange.Start.String(), End: spec.DHCPRange.End.String(),
		}}}
	}
	for _, res := range d.reservationsOn(r.Address) {
		if n.IPs[0].DHCP == nil {
			n.IPs[0].DHCP = &libvirtxml.NetworkDHCP{}
		}
		n.IPs[0].DHCP.Hosts = append(n.IPs[0].DHCP.Hosts, dhcpHost(res))
		if n.DNS == nil {
			n.DNS = &libvirtxml.NetworkDNS{}
		}
		n.DNS.Host = append(n.DNS.Host, dnsHost(res))
	}
	return n
}

// reservationsOn returns the declared reservations on a network.
func (d *Driver) reservationsOn(network runtime.Address) []*dhcp.Reservation {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []*dhcp.Reservation
	for _, r := range d.resources {
		if res, ok := r.Spec.(*dhcp.Reservation); ok && res.Network == network {
			out = append(out, res)
		}
	}
	return out
}

// readNetwork returns the persistent definition of a network, or nil
// when it does not exist.
func readNetwork(l *golibvirt.Libvirt, name string) (golibvirt.Network, *libvirtxml.Network, error) {
	net, err := l.NetworkLookupByName(name)
	if isNotFound(err) {
		return net, nil, nil
	}
	if err != nil {
		return net, nil, err
	}
	s, err := l.NetworkGetXMLDesc(net, uint32(golibvirt.NetworkXMLInactive))
	if err != nil {
		// libvirt's test driver refuses the flag ("unsupported flags");
		// it keeps one definition, the live one.
		if s, err = l.NetworkGetXMLDesc(net, 0); err != nil {
			return net, nil, err
		}
	}
	var x libvirtxml.Network
	if err := x.Unmarshal(s); err != nil {
		return net, nil, err
	}
	return net, &x, nil
}

// networkState is what Diff read of a network, for Apply.
type networkState struct {
	exists, active bool
}

// diffNetwork compares a network with its declaration.
func (d *Driver) diffNetwork(l *golibvirt.Libvirt, r *runtime.Resource, spec *Network, owned *apply.Entry) (*apply.Change, error) {
	net, x, err := readNetwork(l, r.Name)
	if err != nil {
		return nil, fmt.Errorf("%s: read network %s at %s: %w", r.Address, r.Name, d.uri, err)
	}
	if x == nil {
		return &apply.Change{Action: apply.Create}, nil
	}
	owner := runtime.Address("")
	if x.Metadata != nil {
		owner = ownerOf(x.Metadata.XML)
	}
	if owned == nil || owner != "" {
		if err := checkOwner(r, "network", owner); err != nil {
			return nil, err
		}
	}
	c := &apply.Change{Action: apply.NoOp}
	forces := func(name, old, new string) {
		if old != new {
			c.Attrs = append(c.Attrs, apply.AttrChange{Name: name, Old: old, New: new, ForcesReplace: true})
			c.Action = apply.Replace
		}
	}
	mode := "isolated"
	if x.Forward != nil {
		mode = x.Forward.Mode
		if mode == "" {
			mode = "nat"
		}
	}
	forces("mode", mode, spec.Mode)
	var subnet, gateway, dhcpRange string
	for _, ip := range x.IPs {
		if ip.Family != "" && ip.Family != "ipv4" {
			continue
		}
		if p, err := prefixOf(ip.Address, ip.Netmask, ip.Prefix); err == nil {
			subnet, gateway = p.Masked().String(), ip.Address
		}
		if ip.DHCP != nil && len(ip.DHCP.Ranges) > 0 {
			dhcpRange = ip.DHCP.Ranges[0].Start + "-" + ip.DHCP.Ranges[0].End
		}
		break
	}
	forces("subnet", subnet, spec.Subnet.String())
	forces("gateway", gateway, spec.Gateway.String())
	wantRange := ""
	if spec.DHCPRange != nil {
		wantRange = spec.DHCPRange.Start.String() + "-" + spec.DHCPRange.End.String()
	}
	forces("dhcp_range", dhcpRange, wantRange)
	domainName := ""
	if x.Domain != nil {
		domainName = x.Domain.Name
	}
	forces("domain", domainName, spec.Domain)
	if spec.Bridge != "" { // else libvirt names the bridge
		bridge := ""
		if x.Bridge != nil {
			bridge = x.Bridge.Name
		}
		forces("bridge", bridge, spec.Bridge)
	}
	if c.Action == apply.Replace {
		return c, nil
	}
	autostart, err := l.NetworkGetAutostart(net)
	if err != nil {
		return nil, fmt.Errorf("%s: read autostart of network %s at %s: %w", r.Address, r.Name, d.uri, err)
	}
	if (autostart != 0) != spec.Autostart {
		c.Action = apply.Update
		c.Attrs = append(c.Attrs, apply.AttrChange{Name: "autostart", Old: strconv.FormatBool(autostart != 0), New: strconv.FormatBool(spec.Autostart)})
	}
	active, err := l.NetworkIsActive(net)
	if err != nil {
		return nil, fmt.Errorf("%s: read state of network %s at %s: %w", r.Address, r.Name, d.uri, err)
	}
	if active == 0 {
		c.Action = apply.Update
		c.Attrs = append(c.Attrs, apply.AttrChange{Name: "active", Old: "false", New: "true", Note: "the network is started"})
	}
	c.Private = networkState{exists: true, active: active != 0}
	return c, nil
}

// applyNetwork creates, updates or replaces a network.
func (d *Driver) applyNetwork(l *golibvirt.Libvirt, r *runtime.Resource, spec *Network, c *apply.Change) (*apply.Entry, error) {
	if c.Action == apply.Replace {
		if err := d.removeNetwork(l, r.Name); err != nil {
			return nil, fmt.Errorf("%s: %w", r.Address, err)
		}
	}
	net, x, err := readNetwork(l, r.Name)
	if err != nil {
		return nil, fmt.Errorf("%s: read network %s at %s: %w", r.Address, r.Name, d.uri, err)
	}
	if x == nil {
		doc, err := d.networkXML(r, spec).Marshal()
		if err != nil {
			return nil, fmt.Errorf("%s: network XML: %w", r.Address, err)
		}
		if net, err = l.NetworkDefineXML(doc); err != nil {
			return nil, fmt.Errorf("define network %s at %s: %w", r.Name, d.uri, err)
		}
	}
	if active, err := l.NetworkIsActive(net); err != nil {
		return nil, fmt.Errorf("read state of network %s at %s: %w", r.Name, d.uri, err)
	} else if active == 0 {
		if err := l.NetworkCreate(net); err != nil {
			return nil, fmt.Errorf("start network %s at %s: %w", r.Name, d.uri, err)
		}
	}
	if err := l.NetworkSetAutostart(net, boolInt(spec.Autostart)); err != nil {
		return nil, fmt.Errorf("set autostart of network %s at %s: %w", r.Name, d.uri, err)
	}
	return entry(r, uuidString(net.UUID)), nil
}

// deleteNetwork removes an owned network; a missing one is not an error.
// The network is found by the entry's UUID, or, for an entry without one
// (an interrupted create), by name if its metadata names the entry: a
// same-named network that studiorun did not create is left alone.
func (d *Driver) deleteNetwork(l *golibvirt.Libvirt, e *apply.Entry) error {
	if u, ok := parseUUID(e.ID); ok {
		if _, err := l.NetworkLookupByUUID(u); isNotFound(err) {
			return nil
		} else if err != nil {
			return fmt.Errorf("%s: look up network %s at %s: %w", e.Address, e.Name, d.uri, err)
		}
	} else {
		_, x, err := readNetwork(l, e.Name)
		if err != nil {
			return fmt.Errorf("%s: read network %s at %s: %w", e.Address, e.Name, d.uri, err)
		}
		if x == nil || x.Metadata == nil || ownerOf(x.Metadata.XML) != e.Address {
			return nil
		}
	}
	if err := d.removeNetwork(l, e.Name); err != nil {
		return fmt.Errorf("%s: %w", e.Address, err)
	}
	return nil
}

// removeNetwork stops and undefines a network.
func (d *Driver) removeNetwork(l *golibvirt.Libvirt, name string) error {
	net, err := l.NetworkLookupByName(name)
	if isNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("look up network %s at %s: %w", name, d.uri, err)
	}
	if active, err := l.NetworkIsActive(net); err == nil && active != 0 {
		if err := l.NetworkDestroy(net); err != nil && !isNotFound(err) {
			return fmt.Errorf("stop network %s at %s: %w", name, d.uri, err)
		}
	}
	if err := l.NetworkUndefine(net); err != nil && !isNotFound(err) {
		return fmt.Errorf("undefine network %s at %s: %w", name, d.uri, err)
	}
	return nil
}

// boolInt is libvirt's int32 for a flag.
func boolInt(b bool) int32 {
	if b {
		return 1
	}
	return 0
}

// uuidString formats a libvirt UUID.
func uuidString(u golibvirt.UUID) string {
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}
