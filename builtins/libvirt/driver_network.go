package libvirt

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

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
	// ranges are the network's DHCP ranges and want the declared one (nil:
	// none); Apply changes them live when they differ.
	ranges []libvirtxml.NetworkDHCPRange
	want   *libvirtxml.NetworkDHCPRange
}

// rangesMatch reports whether a network's DHCP ranges are just the
// declared one.
func (st networkState) rangesMatch() bool {
	if st.want == nil {
		return len(st.ranges) == 0
	}
	return len(st.ranges) == 1 && st.ranges[0] == *st.want
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
	var subnet, gateway string
	var ranges []libvirtxml.NetworkDHCPRange
	for _, ip := range x.IPs {
		if ip.Family != "" && ip.Family != "ipv4" {
			continue
		}
		if p, err := prefixOf(ip.Address, ip.Netmask, ip.Prefix); err == nil {
			subnet, gateway = p.Masked().String(), ip.Address
		}
		if ip.DHCP != nil {
			for _, r := range ip.DHCP.Ranges {
				ranges = append(ranges, libvirtxml.NetworkDHCPRange{Start: r.Start, End: r.End})
			}
		}
		break
	}
	forces("subnet", subnet, spec.Subnet.String())
	forces("gateway", gateway, spec.Gateway.String())
	var want *libvirtxml.NetworkDHCPRange
	if spec.DHCPRange != nil {
		want = &libvirtxml.NetworkDHCPRange{Start: spec.DHCPRange.Start.String(), End: spec.DHCPRange.End.String()}
	}
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
	st := networkState{exists: true, ranges: ranges, want: want}
	if !st.rangesMatch() {
		var have []string
		for i := range ranges {
			have = append(have, rangeString(&ranges[i]))
		}
		c.Action = apply.Update
		c.Attrs = append(c.Attrs, apply.AttrChange{Name: "dhcp_range", Old: strings.Join(have, ", "), New: rangeString(want), Note: "applied live"})
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
	st.active = active != 0
	c.Private = st
	return c, nil
}

// rangeString shows a DHCP range as the plan does: "start-end", or "".
func rangeString(r *libvirtxml.NetworkDHCPRange) string {
	if r == nil {
		return ""
	}
	return r.Start + "-" + r.End
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
	if st, ok := c.Private.(networkState); ok && !st.rangesMatch() && x != nil {
		if err := d.changeRanges(l, net, st.ranges, st.want); err != nil {
			return nil, fmt.Errorf("%s: %w", r.Address, err)
		}
	}
	return entry(r, uuidString(net.UUID)), nil
}

// changeRanges makes a network's DHCP ranges the declared one, live and
// in its definition, without restarting it (its guests keep their link):
// the declared range is added unless it is there (a run stopped halfway),
// then the others are removed.
func (d *Driver) changeRanges(l *golibvirt.Libvirt, net golibvirt.Network, ranges []libvirtxml.NetworkDHCPRange, want *libvirtxml.NetworkDHCPRange) error {
	mu := d.netLock(net.Name)
	mu.Lock()
	defer mu.Unlock()
	if want != nil && !slices.Contains(ranges, *want) {
		if err := d.networkUpdate(l, net, golibvirt.NetworkUpdateCommandAddLast, golibvirt.NetworkSectionIPDhcpRange, want); err != nil {
			return fmt.Errorf("add DHCP range %s to network %s at %s: %w", rangeString(want), net.Name, d.uri, err)
		}
	}
	for i := range ranges {
		if want != nil && ranges[i] == *want {
			continue
		}
		if err := d.networkUpdate(l, net, golibvirt.NetworkUpdateCommandDelete, golibvirt.NetworkSectionIPDhcpRange, &ranges[i]); err != nil {
			return fmt.Errorf("remove DHCP range %s from network %s at %s: %w", rangeString(&ranges[i]), net.Name, d.uri, err)
		}
	}
	return nil
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

// networkUpdate runs one NetworkUpdate on the live network (when it runs)
// and its persistent definition. go-libvirt's NetworkUpdateCompat asks
// libvirtd which order it expects Command and Section in (libvirt's wire
// protocol had them swapped until 1.2.x) and calls NetworkUpdate with it.
func (d *Driver) networkUpdate(l *golibvirt.Libvirt, net golibvirt.Network, cmd golibvirt.NetworkUpdateCommand, section golibvirt.NetworkUpdateSection, elem interface{ Marshal() (string, error) }) error {
	doc, err := elem.Marshal()
	if err != nil {
		return err
	}
	flags := golibvirt.NetworkUpdateAffectConfig
	if active, err := l.NetworkIsActive(net); err == nil && active != 0 {
		flags |= golibvirt.NetworkUpdateAffectLive
	}
	return l.NetworkUpdateCompat(net, cmd, section, -1, doc, flags)
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
