package libvirt

import (
	"encoding/xml"
	"fmt"
	"net/netip"

	"github.com/studiorun/studiorun/runtime"
)

// Namespace is the XML namespace of studiorun's per-object metadata in
// libvirt: <owner xmlns="https://studiorun.dev/xmlns/1">ADDRESS</owner>
// inside a domain's or a network's <metadata>, naming the resource that
// created the object.
const Namespace = "https://studiorun.dev/xmlns/1"

// ownerMeta is studiorun's metadata element.
type ownerMeta struct {
	XMLName xml.Name `xml:"https://studiorun.dev/xmlns/1 owner"`
	Address string   `xml:",chardata"`
}

// ownerXML returns the inner XML of a <metadata> element that marks the
// object as created by the resource at addr.
func ownerXML(addr runtime.Address) string {
	b, err := xml.Marshal(ownerMeta{Address: string(addr)})
	if err != nil {
		panic(err) // a struct of one string always marshals
	}
	return string(b)
}

// ownerOf reads the owner address from the inner XML of a <metadata>
// element, or "" when studiorun's element is not there.
func ownerOf(metadata string) runtime.Address {
	var doc struct {
		Owners []ownerMeta `xml:"https://studiorun.dev/xmlns/1 owner"`
	}
	if err := xml.Unmarshal([]byte("<metadata>"+metadata+"</metadata>"), &doc); err != nil {
		return ""
	}
	for _, o := range doc.Owners {
		return runtime.Address(o.Address)
	}
	return ""
}

// checkOwner refuses an existing object that studiorun did not create
// for this resource (its metadata names no owner, or another one).
func checkOwner(r *runtime.Resource, what string, owner runtime.Address) error {
	switch owner {
	case r.Address:
		return nil
	case "":
		return fmt.Errorf("%s: a %s %s exists that studiorun did not create; remove it or rename the declaration", r.Address, what, r.Name)
	}
	return fmt.Errorf("%s: a %s %s exists that belongs to %s (per its studiorun metadata), not to this declaration; remove it or rename the declaration", r.Address, what, r.Name, owner)
}

// netmask returns the dotted netmask of an IPv4 prefix.
func netmask(p netip.Prefix) string {
	var m [4]byte
	for i := 0; i < p.Bits(); i++ {
		m[i/8] |= 0x80 >> (i % 8)
	}
	return netip.AddrFrom4(m).String()
}

// prefixOf returns the address of an <ip address netmask|prefix> with its
// prefix length (the host's address on the network: Masked is the
// network); a missing length is /24, libvirt's default.
func prefixOf(address, mask string, prefix uint) (netip.Prefix, error) {
	a, err := netip.ParseAddr(address)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("address %q: %w", address, err)
	}
	bits := int(prefix)
	switch {
	case mask != "":
		if bits, err = maskBits(mask); err != nil {
			return netip.Prefix{}, err
		}
	case prefix == 0:
		bits = 24
	}
	return netip.PrefixFrom(a, bits), nil
}

// maskBits is the prefix length of a dotted netmask ("255.255.255.0": 24).
func maskBits(mask string) (int, error) {
	m, err := netip.ParseAddr(mask)
	if err != nil || !m.Is4() {
		return 0, fmt.Errorf("netmask %q: want a dotted IPv4 netmask", mask)
	}
	b := m.As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	bits := 0
	for v&(1<<31) != 0 {
		bits++
		v <<= 1
	}
	if v != 0 {
		return 0, fmt.Errorf("netmask %q is not contiguous", mask)
	}
	return bits, nil
}
