package libvirt

import (
	"fmt"
	"net/netip"
	"regexp"

	"go.starlark.net/starlark"

	"github.com/studiorun/studiorun/builtins/dhcp"
	"github.com/studiorun/studiorun/runtime"
)

// Network is the spec of libvirt.network: a virtual network that the
// script owns, with its DHCP server and DNS domain. Its reservations are
// dhcp.reservation resources.
type Network struct {
	Mode      string         `json:"mode"`
	Subnet    runtime.Subnet `json:"subnet"`
	Gateway   runtime.IP     `json:"gateway"` // the host's address on the network
	DHCPRange *IPRange       `json:"dhcp_range,omitempty"`
	Domain    string         `json:"domain,omitempty"`
	Bridge    string         `json:"bridge,omitempty"`
	Autostart bool           `json:"autostart"`
	On        string         `json:"on,omitempty"` // the hypervisor's URI; "" for --libvirt-uri
}

// IPRange is an inclusive range of addresses: a network's DHCP pool.
type IPRange struct {
	Start runtime.IP `json:"start"`
	End   runtime.IP `json:"end"`
}

var _ dhcp.Network = (*Network)(nil)

// Kind implements runtime.Spec.
func (*Network) Kind() string { return "libvirt.network" }

// DHCPSubnet implements dhcp.Network.
func (n *Network) DHCPSubnet() runtime.Subnet { return n.Subnet }

// DHCPGateway implements dhcp.Network: the host's address on the network,
// which no reservation may take.
func (n *Network) DHCPGateway() (netip.Addr, bool) { return n.Gateway.Addr(), true }

// ExistingNetwork is the spec of libvirt.existing_network: a network that
// the script attaches NICs to but does not own, such as "default".
type ExistingNetwork struct {
	On string `json:"on,omitempty"`
}

// Kind implements runtime.Spec.
func (*ExistingNetwork) Kind() string { return "libvirt.existing_network" }

// networkKinds are the kinds a NIC's network may refer to.
var networkKinds = []string{"libvirt.network", "libvirt.existing_network"}

// network implements libvirt.network.
func network(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var name string
	var gateway, dhcpRange, domainName, bridge, on starlark.Value = starlark.None, starlark.None, starlark.None, starlark.None, starlark.None
	spec := Network{Mode: "nat", Autostart: true}
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "name", &name, "subnet", &spec.Subnet,
		"gateway?", &gateway, "dhcp_range?", &dhcpRange, "mode?", &spec.Mode, "domain?", &domainName,
		"bridge?", &bridge, "autostart?", &spec.Autostart, "on?", &on); err != nil {
		return nil, err
	}
	if err := checkName(b.Name(), name); err != nil {
		return nil, err
	}
	where := fmt.Sprintf("%s %q", b.Name(), name)
	var err error
	if spec.On, err = unpackOn(where, on); err != nil {
		return nil, err
	}
	if err := checkOneOf(where+": mode", spec.Mode, "nat", "route", "isolated"); err != nil {
		return nil, err
	}
	if err := unpackGateway(&spec, gateway); err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	if dhcpRange != starlark.None {
		r, err := unpackRange(spec.Subnet, spec.Gateway.Addr(), dhcpRange)
		if err != nil {
			return nil, fmt.Errorf("%s: dhcp_range: %w", where, err)
		}
		spec.DHCPRange = r
	}
	if domainName != starlark.None {
		s, ok := starlark.AsString(domainName)
		if !ok || !dnsDomainRE.MatchString(s) || len(s) > 253 {
			return nil, fmt.Errorf("%s: domain %s: want a DNS domain such as \"studio.lan\"", where, domainName)
		}
		spec.Domain = s
	}
	if bridge != starlark.None {
		s, ok := starlark.AsString(bridge)
		if !ok {
			return nil, fmt.Errorf("%s: bridge: got %s, want a bridge device name such as \"virbr-studio\"", where, bridge.Type())
		}
		if err := checkBridgeName(s); err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		spec.Bridge = s
	}
	bld, err := runtime.BuilderOf(thread, b.Name())
	if err != nil {
		return nil, err
	}
	for _, other := range bld.Resources() {
		// libvirt refuses overlapping networks on one host; two hosts'
		// NAT networks may share a subnet.
		if o, ok := other.Spec.(*Network); ok && o.On == spec.On && o.Subnet.Prefix().Overlaps(spec.Subnet.Prefix()) {
			return nil, fmt.Errorf("%s: subnet %s overlaps subnet %s of %s at %s: libvirt refuses networks that share addresses", where, spec.Subnet, o.Subnet, other.Address, other.Pos)
		}
	}
	if err := checkRedeclared(thread, b.Name(), spec.Kind(), name, spec.On); err != nil {
		return nil, err
	}
	r, err := runtime.Declare(thread, b.Name(), name, &spec)
	if err != nil {
		return nil, err
	}
	keys := []uniqueKey{networkNameKey(name, spec.On)}
	if spec.Bridge != "" {
		keys = append(keys, uniqueKey{namespace: onNamespace("libvirt.network bridge", spec.On), key: spec.Bridge, what: "bridge " + spec.Bridge})
	}
	if err := claim(thread, b.Name(), where, r, keys...); err != nil {
		return nil, err
	}
	return runtime.NewRef(r), nil
}

var dnsDomainRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$`)

// unpackGateway sets the network's gateway: the given address, which must
// be a host address of the subnet, or else the subnet's first host.
func unpackGateway(spec *Network, v starlark.Value) error {
	if v == starlark.None {
		first, _ := spec.Subnet.Host(1)
		spec.Gateway = runtime.IP(first)
		return nil
	}
	if err := spec.Gateway.Unpack(v); err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	if err := checkHostAddr(spec.Subnet, spec.Gateway.Addr()); err != nil {
		return fmt.Errorf("gateway %w", err)
	}
	return nil
}

// unpackRange reads a (start, end) pair of host addresses of subnet that
// leaves out the gateway.
func unpackRange(subnet runtime.Subnet, gateway netip.Addr, v starlark.Value) (*IPRange, error) {
	pair, ok := v.(starlark.Indexable)
	if _, isString := v.(starlark.String); isString || !ok || pair.Len() != 2 {
		return nil, fmt.Errorf("got %s, want a (start, end) pair of addresses such as (\"172.16.0.2\", \"172.16.0.9\")", v)
	}
	var r IPRange
	for i, ip := range []*runtime.IP{&r.Start, &r.End} {
		if err := ip.Unpack(pair.Index(i)); err != nil {
			return nil, err
		}
		if err := checkHostAddr(subnet, ip.Addr()); err != nil {
			return nil, err
		}
	}
	start, end := r.Start.Addr(), r.End.Addr()
	switch {
	case end.Less(start):
		return nil, fmt.Errorf("start %s is after end %s", start, end)
	case !gateway.Less(start) && !end.Less(gateway):
		return nil, fmt.Errorf("%s to %s contains the gateway %s", start, end, gateway)
	}
	return &r, nil
}

// checkHostAddr refuses an address that is outside subnet or is its
// network or broadcast address.
func checkHostAddr(subnet runtime.Subnet, ip netip.Addr) error {
	switch {
	case !subnet.Prefix().Contains(ip):
		return fmt.Errorf("%s is outside subnet %s", ip, subnet)
	case ip == subnet.Prefix().Addr():
		return fmt.Errorf("%s is the network address of %s", ip, subnet)
	case ip == subnet.Broadcast():
		return fmt.Errorf("%s is the broadcast address of %s", ip, subnet)
	}
	return nil
}

// checkBridgeName refuses what Linux would refuse as a network device name.
func checkBridgeName(s string) error {
	if s == "" || len(s) > 15 || s == "." || s == ".." || !bridgeRE.MatchString(s) {
		return fmt.Errorf("bridge %q: want a network device name of 1 to 15 letters, digits, '-', '_' or '.' such as \"br0\"", s)
	}
	return nil
}

var bridgeRE = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)

// networkNameKey makes a network's libvirt name unique on its hypervisor
// across libvirt.network and libvirt.existing_network.
func networkNameKey(name, on string) uniqueKey {
	return uniqueKey{namespace: onNamespace("libvirt.network name", on), key: name, what: "network name " + name}
}

// existingNetwork implements libvirt.existing_network.
func existingNetwork(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var spec ExistingNetwork
	return declareExisting(thread, b, args, kwargs, &spec, &spec.On, networkNameKey)
}
