package runtime

import (
	"fmt"
	"net"
	"net/netip"
	"strings"

	"go.starlark.net/starlark"
)

// MAC is a unicast Ethernet address, unpacked from a string such as
// "02:00:00:00:00:01" and rendered in lower case.
type MAC string

var _ starlark.Unpacker = (*MAC)(nil)

// Unpack implements starlark.Unpacker.
func (m *MAC) Unpack(v starlark.Value) error {
	s, ok := starlark.AsString(v)
	if !ok {
		return fmt.Errorf("MAC address: got %s, want a string such as \"02:00:00:00:00:01\"", v.Type())
	}
	hw, err := net.ParseMAC(s)
	if err != nil || len(hw) != 6 || strings.Count(s, ":") != 5 {
		return fmt.Errorf("MAC address %q is malformed: want six hex octets such as \"02:00:00:00:00:01\"", s)
	}
	if hw[0]&1 != 0 {
		return fmt.Errorf("MAC address %q is multicast (the low bit of its first octet is set): a NIC needs a unicast address such as \"02:00:00:00:00:01\"", s)
	}
	*m = MAC(hw.String())
	return nil
}

// Subnet is an IPv4 network in CIDR notation, unpacked from a string such
// as "172.16.0.0/24" (which must be the network's own address).
type Subnet netip.Prefix

var _ starlark.Unpacker = (*Subnet)(nil)

// Unpack implements starlark.Unpacker.
func (s *Subnet) Unpack(v starlark.Value) error {
	str, ok := starlark.AsString(v)
	if !ok {
		return fmt.Errorf("subnet: got %s, want a CIDR such as \"172.16.0.0/24\"", v.Type())
	}
	p, err := netip.ParsePrefix(str)
	if err != nil {
		return fmt.Errorf("subnet %q: want a CIDR such as \"172.16.0.0/24\"", str)
	}
	if !p.Addr().Is4() {
		return fmt.Errorf("subnet %q: only IPv4 subnets are supported", str)
	}
	if p.Bits() > 30 {
		return fmt.Errorf("subnet %q is too small: want /30 or larger", str)
	}
	if p.Masked() != p {
		return fmt.Errorf("subnet %q has host bits set: did you mean %q?", str, p.Masked().String())
	}
	*s = Subnet(p)
	return nil
}

// Prefix returns the subnet as a netip.Prefix.
func (s Subnet) Prefix() netip.Prefix { return netip.Prefix(s) }

// String returns the CIDR notation.
func (s Subnet) String() string { return netip.Prefix(s).String() }

// MarshalJSON writes the CIDR notation.
func (s Subnet) MarshalJSON() ([]byte, error) { return []byte(`"` + s.String() + `"`), nil }

// Capacity is the number of host addresses, without the network and
// broadcast addresses.
func (s Subnet) Capacity() int {
	return 1<<(32-netip.Prefix(s).Bits()) - 2
}

// Host returns the n-th host address (1 is the first after the network
// address), or false when n is outside 1..Capacity.
func (s Subnet) Host(n int) (netip.Addr, bool) {
	if n < 1 || n > s.Capacity() {
		return netip.Addr{}, false
	}
	b := netip.Prefix(s).Addr().As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]) + uint32(n)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), true
}

// Broadcast returns the subnet's broadcast address.
func (s Subnet) Broadcast() netip.Addr {
	a, _ := s.Host(s.Capacity())
	return a.Next()
}

// IP is an IPv4 address, unpacked from a string such as "172.16.0.10".
type IP netip.Addr

var _ starlark.Unpacker = (*IP)(nil)

// Unpack implements starlark.Unpacker.
func (ip *IP) Unpack(v starlark.Value) error {
	str, ok := starlark.AsString(v)
	if !ok {
		return fmt.Errorf("IP address: got %s, want a string such as \"172.16.0.10\"", v.Type())
	}
	a, err := netip.ParseAddr(str)
	if err != nil || !a.Is4() {
		return fmt.Errorf("IP address %q: want an IPv4 address such as \"172.16.0.10\"", str)
	}
	*ip = IP(a)
	return nil
}

// Addr returns the address as a netip.Addr.
func (ip IP) Addr() netip.Addr { return netip.Addr(ip) }

// String returns the dotted notation.
func (ip IP) String() string { return netip.Addr(ip).String() }

// MarshalJSON writes the dotted notation.
func (ip IP) MarshalJSON() ([]byte, error) { return []byte(`"` + ip.String() + `"`), nil }
