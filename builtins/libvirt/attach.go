package libvirt

// A running libvirt network as a machine that libvirt does not define
// sees it: the image builder's build VM joins the network's bridge, its
// HTTP server listens on the host's address on the network, and the
// VM's address is read from the network's DHCP leases.

import (
	"fmt"
	"net/netip"
	"strings"

	golibvirt "github.com/digitalocean/go-libvirt"
	"libvirt.org/go/libvirtxml"
)

// Attachment is a running libvirt network, read through its own
// connection to libvirtd. Close it when done.
type Attachment struct {
	// Name is the network's name, Bridge its bridge device ("virbr1").
	Name, Bridge string
	// Host is the host's IPv4 address on the network, with the network's
	// prefix length (192.168.122.1/24).
	Host netip.Prefix

	l   *golibvirt.Libvirt
	net golibvirt.Network
}

// AttachNetwork connects to the libvirt at uri and reads network name,
// which must be running, have a bridge and an IPv4 address of the host
// with a DHCP server on it (a NAT, routed, open or isolated network).
func AttachNetwork(uri, name string) (*Attachment, error) {
	l, err := dial(uri)
	if err != nil {
		return nil, err
	}
	a, err := readAttachment(l, name)
	if err != nil {
		_ = l.Disconnect()
		return nil, fmt.Errorf("libvirt network %s at %s: %w", name, uri, err)
	}
	return a, nil
}

func readAttachment(l *golibvirt.Libvirt, name string) (*Attachment, error) {
	n, x, err := readNetwork(l, name)
	if err != nil {
		return nil, err
	}
	if x == nil {
		return nil, fmt.Errorf("no such network (virsh net-list --all lists them)")
	}
	if active, err := l.NetworkIsActive(n); err != nil {
		return nil, err
	} else if active == 0 {
		return nil, fmt.Errorf("not running: start it (virsh net-start %s)", name)
	}
	a := &Attachment{Name: name, l: l, net: n}
	if x.Bridge != nil {
		a.Bridge = x.Bridge.Name
	}
	if a.Bridge == "" {
		return nil, fmt.Errorf("it has no bridge (forward mode %s): a build VM joins a network through its bridge", forwardMode(x))
	}
	for _, ip := range x.IPs {
		if ip.Family != "" && ip.Family != "ipv4" || ip.DHCP == nil {
			continue
		}
		if a.Host, err = prefixOf(ip.Address, ip.Netmask, ip.Prefix); err != nil {
			return nil, fmt.Errorf("its address: %w", err)
		}
		return a, nil
	}
	return nil, fmt.Errorf("it has no IPv4 address with a DHCP server: the build's HTTP server listens on the host's address and the build VM's address comes from the DHCP leases")
}

// forwardMode is a network's forward mode, "isolated" when it has none.
func forwardMode(x *libvirtxml.Network) string {
	if x.Forward == nil || x.Forward.Mode == "" {
		return "isolated"
	}
	return x.Forward.Mode
}

// Lease returns the IPv4 address that the network's DHCP server leased
// to mac, and false while there is none.
func (a *Attachment) Lease(mac string) (netip.Addr, bool, error) {
	leases, _, err := a.l.NetworkGetDhcpLeases(a.net, golibvirt.OptString{strings.ToLower(mac)}, 1, 0)
	if err != nil {
		return netip.Addr{}, false, fmt.Errorf("DHCP leases of network %s: %w", a.Name, err)
	}
	for _, l := range leases {
		if l.Type != int32(golibvirt.IPAddrTypeIpv4) {
			continue
		}
		if ip, err := netip.ParseAddr(l.Ipaddr); err == nil {
			return ip, true, nil
		}
	}
	return netip.Addr{}, false, nil
}

// Close disconnects from libvirtd.
func (a *Attachment) Close() error {
	if err := a.l.Disconnect(); err != nil {
		return fmt.Errorf("disconnect from libvirt (network %s): %w", a.Name, err)
	}
	return nil
}
