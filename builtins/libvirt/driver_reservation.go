package libvirt

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"

	golibvirt "github.com/digitalocean/go-libvirt"
	"libvirt.org/go/libvirtxml"

	"github.com/studiorun/studiorun/builtins/dhcp"
	"github.com/studiorun/studiorun/runtime"
	"github.com/studiorun/studiorun/runtime/apply"
)

// A reservation on a libvirt network is two entries of the network's
// definition: a DHCP host (MAC, IP, name) and a DNS host (IP, name). They
// are changed with NetworkUpdate, live and in the persistent definition,
// so that they apply without restarting the network and survive its
// restart. Its state entry ID is the MAC.

// dhcpHost returns the DHCP host entry of a reservation.
func dhcpHost(res *dhcp.Reservation) libvirtxml.NetworkDHCPHost {
	return libvirtxml.NetworkDHCPHost{MAC: string(res.MAC), IP: res.IP.String(), Name: res.Hostname}
}

// dnsHost returns the DNS host entry of a reservation.
func dnsHost(res *dhcp.Reservation) libvirtxml.NetworkDNSHost {
	return libvirtxml.NetworkDNSHost{IP: res.IP.String(), Hostnames: []libvirtxml.NetworkDNSHostHostname{{Hostname: res.Hostname}}}
}

// netLock serialises the updates of one network: libvirt applies each
// NetworkUpdate on its own, and the driver's read-then-update must not
// interleave with another reservation's.
func (d *Driver) netLock(name string) *sync.Mutex {
	d.mu.Lock()
	defer d.mu.Unlock()
	m, ok := d.netLocks[name]
	if !ok {
		m = &sync.Mutex{}
		d.netLocks[name] = m
	}
	return m
}

// findHosts returns the DHCP host entry with the MAC and the DNS host
// entries that carry the hostname, in a network's definition.
func findHosts(x *libvirtxml.Network, mac, hostname string) (*libvirtxml.NetworkDHCPHost, []libvirtxml.NetworkDNSHost) {
	var dh *libvirtxml.NetworkDHCPHost
	for _, ip := range x.IPs {
		if ip.DHCP == nil {
			continue
		}
		for i := range ip.DHCP.Hosts {
			if strings.EqualFold(ip.DHCP.Hosts[i].MAC, mac) {
				dh = &ip.DHCP.Hosts[i]
			}
		}
	}
	var dns []libvirtxml.NetworkDNSHost
	if x.DNS != nil {
		for _, h := range x.DNS.Host {
			for _, n := range h.Hostnames {
				if n.Hostname == hostname {
					dns = append(dns, h)
					break
				}
			}
		}
	}
	return dh, dns
}

// diffReservation compares a reservation with the network's host entries.
func (d *Driver) diffReservation(l *golibvirt.Libvirt, r *runtime.Resource, spec *dhcp.Reservation, owned *apply.Entry) (*apply.Change, error) {
	netName := spec.Network.Name()
	_, x, err := readNetwork(l, netName)
	if err != nil {
		return nil, fmt.Errorf("%s: read network %s at %s: %w", r.Address, netName, d.uri, err)
	}
	if x == nil {
		return &apply.Change{Action: apply.Create}, nil // the network is about to be created
	}
	dh, dns := findHosts(x, string(spec.MAC), spec.Hostname)
	if dh == nil && len(dns) == 0 {
		return &apply.Change{Action: apply.Create}, nil
	}
	if dh == nil {
		return &apply.Change{Action: apply.Update, Attrs: []apply.AttrChange{{Name: "mac", New: string(spec.MAC), Note: "DHCP host entry added"}}}, nil
	}
	c := &apply.Change{Action: apply.NoOp}
	if dh.IP != spec.IP.String() {
		c.Attrs = append(c.Attrs, apply.AttrChange{Name: "ip", Old: dh.IP, New: spec.IP.String()})
	}
	if dh.Name != spec.Hostname {
		c.Attrs = append(c.Attrs, apply.AttrChange{Name: "hostname", Old: dh.Name, New: spec.Hostname})
	}
	if len(c.Attrs) == 0 && !dnsMatches(dns, spec) {
		c.Attrs = append(c.Attrs, apply.AttrChange{Name: "dns", New: spec.IP.String() + " " + spec.Hostname, Note: "DNS host entry"})
	}
	if len(c.Attrs) > 0 {
		c.Action = apply.Update
	} else if owned == nil {
		// The entry is there but the state lost it (the network was created
		// with its reservations, and the run was killed before they were
		// recorded): record it, so that removing the host deletes it.
		c.Recovered = entry(r, string(spec.MAC))
	}
	return c, nil
}

// dnsMatches reports whether the DNS entries are exactly the
// reservation's.
func dnsMatches(dns []libvirtxml.NetworkDNSHost, spec *dhcp.Reservation) bool {
	return len(dns) == 1 && dns[0].IP == spec.IP.String() && len(dns[0].Hostnames) == 1
}

// applyReservation adds or modifies the network's host entries. It reads
// the network first, so that it also finishes an interrupted run.
func (d *Driver) applyReservation(l *golibvirt.Libvirt, r *runtime.Resource, spec *dhcp.Reservation, c *apply.Change) (*apply.Entry, error) {
	netName := spec.Network.Name()
	mu := d.netLock(netName)
	mu.Lock()
	defer mu.Unlock()
	net, x, err := readNetwork(l, netName)
	if err != nil || x == nil {
		return nil, fmt.Errorf("%s: read network %s at %s: %v", r.Address, netName, d.uri, orMissing(err))
	}
	// Remove what stands in the way: this MAC's old entry and the DNS
	// entries of its old IP or of this hostname.
	dh, dns := findHosts(x, string(spec.MAC), spec.Hostname)
	if dh != nil && (dh.IP != spec.IP.String() || dh.Name != spec.Hostname) {
		if err := d.networkUpdate(l, net, golibvirt.NetworkUpdateCommandModify, golibvirt.NetworkSectionIPDhcpHost, ptr(dhcpHost(spec))); err != nil {
			return nil, fmt.Errorf("%s: modify DHCP host %s in network %s at %s: %w", r.Address, spec.MAC, netName, d.uri, err)
		}
		if dh.Name != spec.Hostname {
			for _, h := range dnsFor(x, dh.Name) {
				if err := d.networkUpdate(l, net, golibvirt.NetworkUpdateCommandDelete, golibvirt.NetworkSectionDNSHost, ptr(h)); err != nil {
					return nil, fmt.Errorf("%s: delete DNS host %s from network %s at %s: %w", r.Address, dh.Name, netName, d.uri, err)
				}
			}
		}
	}
	if dh == nil {
		if err := d.networkUpdate(l, net, golibvirt.NetworkUpdateCommandAddLast, golibvirt.NetworkSectionIPDhcpHost, ptr(dhcpHost(spec))); err != nil {
			return nil, fmt.Errorf("%s: add DHCP host %s to network %s at %s: %w", r.Address, spec.MAC, netName, d.uri, err)
		}
	}
	if !dnsMatches(dns, spec) {
		for _, h := range dns {
			if err := d.networkUpdate(l, net, golibvirt.NetworkUpdateCommandDelete, golibvirt.NetworkSectionDNSHost, ptr(h)); err != nil {
				return nil, fmt.Errorf("%s: delete DNS host %s from network %s at %s: %w", r.Address, spec.Hostname, netName, d.uri, err)
			}
		}
		if err := d.networkUpdate(l, net, golibvirt.NetworkUpdateCommandAddLast, golibvirt.NetworkSectionDNSHost, ptr(dnsHost(spec))); err != nil {
			return nil, fmt.Errorf("%s: add DNS host %s to network %s at %s: %w", r.Address, spec.Hostname, netName, d.uri, err)
		}
	}
	return entry(r, string(spec.MAC)), nil
}

// dnsFor returns the DNS host entries that carry a hostname.
func dnsFor(x *libvirtxml.Network, hostname string) []libvirtxml.NetworkDNSHost {
	_, dns := findHosts(x, "", hostname)
	return dns
}

// recordedReservation is what the state's entry of a reservation holds
// (its attributes as JSON) that its deletion needs.
type recordedReservation struct {
	Network  runtime.Address `json:"network"`
	MAC      string          `json:"mac"`
	Hostname string          `json:"hostname"`
}

// readReservationEntry reads a reservation's entry.
func readReservationEntry(e *apply.Entry) (*recordedReservation, error) {
	var spec recordedReservation
	if err := json.Unmarshal(e.Spec, &spec); err != nil || spec.Network == "" {
		return nil, fmt.Errorf("%s: the state's entry does not name the reservation's network", e.Address)
	}
	return &spec, nil
}

// ContainerOf tells the engine (apply.Container) that a reservation's host
// entries are in its network's definition and go with it.
func ContainerOf(e *apply.Entry) (runtime.Address, bool) {
	if e.Kind != "dhcp.reservation" {
		return "", false
	}
	spec, err := readReservationEntry(e)
	if err != nil {
		return "", false
	}
	return spec.Network, true
}

// deleteReservation removes a reservation's host entries.
func (d *Driver) deleteReservation(l *golibvirt.Libvirt, e *apply.Entry) error {
	spec, err := readReservationEntry(e)
	if err != nil {
		return err
	}
	netName := spec.Network.Name()
	mu := d.netLock(netName)
	mu.Lock()
	defer mu.Unlock()
	net, x, err := readNetwork(l, netName)
	if err != nil {
		return fmt.Errorf("%s: read network %s at %s: %w", e.Address, netName, d.uri, err)
	}
	if x == nil {
		return nil // gone with its network
	}
	mac := spec.MAC
	if mac == "" {
		mac = e.ID
	}
	dh, dns := findHosts(x, mac, spec.Hostname)
	if dh != nil {
		if err := d.networkUpdate(l, net, golibvirt.NetworkUpdateCommandDelete, golibvirt.NetworkSectionIPDhcpHost, ptr(*dh)); err != nil {
			return fmt.Errorf("%s: delete DHCP host %s from network %s at %s: %w", e.Address, mac, netName, d.uri, err)
		}
	}
	for _, h := range dns {
		if err := d.networkUpdate(l, net, golibvirt.NetworkUpdateCommandDelete, golibvirt.NetworkSectionDNSHost, ptr(h)); err != nil {
			return fmt.Errorf("%s: delete DNS host %s from network %s at %s: %w", e.Address, spec.Hostname, netName, d.uri, err)
		}
	}
	return nil
}

// orMissing names a missing network when err is nil.
func orMissing(err error) error {
	if err == nil {
		return fmt.Errorf("the network does not exist")
	}
	return err
}

// ptr returns a pointer to a copy of v.
func ptr[T any](v T) *T { return &v }
