// Package dhcp is the Starlark module for static DHCP reservations:
//
//	dhcp.laa(index, prefix="02:00:00:00:00") -> str
//	dhcp.ip(subnet, n) -> str
//	dhcp.capacity(subnet) -> int
//	dhcp.hosts_file(name, subnet, path, gateway=None) -> dhcp.hosts_file
//	dhcp.reservation(network, mac, ip, hostname) -> dhcp.reservation
//
// A reservation's network is a libvirt.network (the reservation becomes a
// host entry of the network's DHCP and DNS) or a dhcp.hosts_file (a
// dnsmasq dhcp-hosts file for a DHCP server that studiorun does not run,
// such as a site router on a bridged network).
package dhcp

import (
	"fmt"
	"net/netip"
	"regexp"
	"strings"

	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"

	"github.com/studiorun/studiorun/runtime"
)

// Module is the dhcp module.
var Module = &starlarkstruct.Module{
	Name: "dhcp",
	Members: starlark.StringDict{
		"laa":         starlark.NewBuiltin("dhcp.laa", laa),
		"ip":          starlark.NewBuiltin("dhcp.ip", hostIP),
		"capacity":    starlark.NewBuiltin("dhcp.capacity", capacity),
		"hosts_file":  starlark.NewBuiltin("dhcp.hosts_file", hostsFile),
		"reservation": starlark.NewBuiltin("dhcp.reservation", reservation),
	},
}

// Network is implemented by the specs of resources that serve DHCP to a
// subnet: libvirt.network and dhcp.hosts_file.
type Network interface {
	runtime.Spec
	DHCPSubnet() runtime.Subnet
	// DHCPGateway returns the router address handed to clients, if any.
	DHCPGateway() (netip.Addr, bool)
}

// Reservation is the spec of dhcp.reservation: a fixed IP address and host
// name for a MAC address on a network.
type Reservation struct {
	Network  runtime.Address `json:"network"`
	MAC      runtime.MAC     `json:"mac"`
	IP       runtime.IP      `json:"ip"`
	Hostname string          `json:"hostname"`
}

// Kind implements runtime.Spec.
func (*Reservation) Kind() string { return "dhcp.reservation" }

// HostsFile is the spec of dhcp.hosts_file: the reservations of a subnet
// written as a dnsmasq dhcp-hosts file.
type HostsFile struct {
	Path    string         `json:"path"`
	Subnet  runtime.Subnet `json:"subnet"`
	Gateway *runtime.IP    `json:"gateway,omitempty"`
}

// Kind implements runtime.Spec.
func (*HostsFile) Kind() string { return "dhcp.hosts_file" }

// DHCPSubnet implements Network.
func (h *HostsFile) DHCPSubnet() runtime.Subnet { return h.Subnet }

// DHCPGateway implements Network.
func (h *HostsFile) DHCPGateway() (netip.Addr, bool) {
	if h.Gateway == nil {
		return netip.Addr{}, false
	}
	return h.Gateway.Addr(), true
}

const maxLAAIndex = 1<<24 - 1

// laa implements dhcp.laa: the index-th locally administered MAC address
// after prefix (padded with zero octets to six).
func laa(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var index int
	prefix := "02:00:00:00:00"
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "index", &index, "prefix?", &prefix); err != nil {
		return nil, err
	}
	base, err := parsePrefix(prefix)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", b.Name(), err)
	}
	if index < 1 || index > maxLAAIndex {
		return nil, fmt.Errorf("%s: index %d out of range: want 1 to %d", b.Name(), index, maxLAAIndex)
	}
	mac := base + uint64(index)
	if mac>>24 != base>>24 {
		return nil, fmt.Errorf("%s: index %d out of range: %s + %d runs past the prefix's first three octets", b.Name(), index, prefix, index)
	}
	octets := make([]string, 6)
	for i := range octets {
		octets[i] = fmt.Sprintf("%02X", byte(mac>>(8*(5-i))))
	}
	return starlark.String(strings.Join(octets, ":")), nil
}

// parsePrefix reads one to five hex octets of a locally administered
// unicast MAC address into the top of a 48-bit number.
func parsePrefix(prefix string) (uint64, error) {
	parts := strings.Split(prefix, ":")
	if len(parts) < 1 || len(parts) > 5 {
		return 0, fmt.Errorf("prefix %q: want one to five hex octets such as \"02:00:00:00:00\"", prefix)
	}
	var base uint64
	for i := 0; i < 6; i++ {
		var octet uint64
		if i < len(parts) {
			if _, err := fmt.Sscanf(parts[i], "%2x", &octet); err != nil || len(parts[i]) != 2 {
				return 0, fmt.Errorf("prefix %q: %q is not a hex octet", prefix, parts[i])
			}
		}
		base = base<<8 | octet
	}
	if first := base >> 40; first&0b11 != 0b10 {
		return 0, fmt.Errorf("prefix %q is not a locally administered unicast address: its first octet must end in binary 10 (x2, x6, xA or xE)", prefix)
	}
	return base, nil
}

// hostIP implements dhcp.ip: the n-th host address of a subnet.
func hostIP(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var subnet runtime.Subnet
	var n int
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "subnet", &subnet, "n", &n); err != nil {
		return nil, err
	}
	ip, ok := subnet.Host(n)
	if !ok {
		return nil, fmt.Errorf("%s: host %d does not fit in %s, which has room for hosts 1 to %d", b.Name(), n, subnet, subnet.Capacity())
	}
	return starlark.String(ip.String()), nil
}

// capacity implements dhcp.capacity: the number of host addresses.
func capacity(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var subnet runtime.Subnet
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "subnet", &subnet); err != nil {
		return nil, err
	}
	return starlark.MakeInt(subnet.Capacity()), nil
}

// hostsFile implements dhcp.hosts_file.
func hostsFile(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var name, path string
	var spec HostsFile
	var gateway starlark.Value = starlark.None
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "name", &name, "subnet", &spec.Subnet, "path", &path, "gateway?", &gateway); err != nil {
		return nil, err
	}
	if !runtime.ValidName(name) {
		return nil, fmt.Errorf("%s: name %q: %s", b.Name(), name, runtime.NameRule)
	}
	p, err := runtime.ProjectPath(thread, path)
	if err != nil {
		return nil, fmt.Errorf("%s %q: path: %w", b.Name(), name, err)
	}
	spec.Path = p
	if gateway != starlark.None {
		var gw runtime.IP
		if err := gw.Unpack(gateway); err != nil {
			return nil, fmt.Errorf("%s %q: gateway: %w", b.Name(), name, err)
		}
		if err := checkHostAddr(spec.Subnet, gw.Addr(), netip.Addr{}); err != nil {
			return nil, fmt.Errorf("%s %q: gateway %w", b.Name(), name, err)
		}
		spec.Gateway = &gw
	}
	r, err := runtime.Declare(thread, b.Name(), name, &spec)
	if err != nil {
		return nil, err
	}
	return runtime.NewRef(r), nil
}

var hostnameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$`)

// reservation implements dhcp.reservation.
func reservation(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var network starlark.Value
	var spec Reservation
	if err := starlark.UnpackArgs(b.Name(), args, kwargs,
		"network", &network, "mac", &spec.MAC, "ip", &spec.IP, "hostname", &spec.Hostname); err != nil {
		return nil, err
	}
	netRes, err := runtime.UnpackRef(b.Name(), "network", network, "libvirt.network", "dhcp.hosts_file")
	if err != nil {
		return nil, err
	}
	where := fmt.Sprintf("%s %q", b.Name(), spec.Hostname)
	if !hostnameRE.MatchString(spec.Hostname) || len(spec.Hostname) > 253 {
		return nil, fmt.Errorf("%s: hostname %q: want lower-case letters, digits and - in dot-separated labels", b.Name(), spec.Hostname)
	}
	n := netRes.Spec.(Network)
	gw, _ := n.DHCPGateway()
	if err := checkHostAddr(n.DHCPSubnet(), spec.IP.Addr(), gw); err != nil {
		return nil, fmt.Errorf("%s: ip %w (network %s)", where, err, netRes.Address)
	}
	spec.Network = netRes.Address
	bld, err := runtime.BuilderOf(thread, b.Name())
	if err != nil {
		return nil, err
	}
	claims := []struct{ namespace, key, what string }{
		{"dhcp.mac", string(spec.MAC), "MAC " + string(spec.MAC)},
		{"dhcp.ip " + string(netRes.Address), spec.IP.String(), "IP " + spec.IP.String()},
		{"dhcp.hostname " + string(netRes.Address), spec.Hostname, "hostname " + spec.Hostname},
	}
	for _, c := range claims {
		if holder := bld.Holder(c.namespace, c.key); holder != nil {
			return nil, fmt.Errorf("%s: %s is already reserved by %s at %s", where, c.what, holder.Address, holder.Pos)
		}
	}
	r, err := runtime.Declare(thread, b.Name(), spec.Hostname, &spec, netRes.Address)
	if err != nil {
		return nil, err
	}
	for _, c := range claims {
		bld.Claim(c.namespace, c.key, r)
	}
	return runtime.NewRef(r), nil
}

// checkHostAddr checks that ip can be given to a host of subnet: inside it,
// and not its network, broadcast or gateway address.
func checkHostAddr(subnet runtime.Subnet, ip, gateway netip.Addr) error {
	p := subnet.Prefix()
	switch {
	case !p.Contains(ip):
		return fmt.Errorf("%s is outside subnet %s", ip, subnet)
	case ip == p.Addr():
		return fmt.Errorf("%s is the network address of %s", ip, subnet)
	case ip == subnet.Broadcast():
		return fmt.Errorf("%s is the broadcast address of %s", ip, subnet)
	case gateway.IsValid() && ip == gateway:
		return fmt.Errorf("%s is the gateway address of %s", ip, subnet)
	}
	return nil
}
