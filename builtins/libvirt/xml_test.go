package libvirt

import (
	"encoding/json"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"libvirt.org/go/libvirtxml"
)

func TestOwnerMetadataRoundTrips(t *testing.T) {
	inner := ownerXML("libvirt.domain.vfx-dev-001")
	if !strings.Contains(inner, `xmlns="https://studiorun.dev/xmlns/1"`) {
		t.Errorf("owner XML %s lacks studiorun's namespace", inner)
	}
	// Through a domain definition, as libvirt stores it, with another
	// application's metadata beside it.
	x := &libvirtxml.Domain{Name: "vfx-dev-001", Metadata: &libvirtxml.DomainMetadata{XML: `<app:x xmlns:app="urn:other">1</app:x>` + inner}}
	doc, err := x.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	var back libvirtxml.Domain
	if err := back.Unmarshal(doc); err != nil {
		t.Fatal(err)
	}
	if got := ownerOf(back.Metadata.XML); got != "libvirt.domain.vfx-dev-001" {
		t.Errorf("ownerOf = %q", got)
	}
	if got := ownerOf(`<owner xmlns="urn:someone-else">libvirt.domain.x</owner>`); got != "" {
		t.Errorf("ownerOf another namespace = %q, want none", got)
	}
}

func TestNetmaskAndPrefix(t *testing.T) {
	for _, bits := range []int{8, 16, 20, 24, 30} {
		p := netip.MustParsePrefix("10.0.0.0/" + strconv.Itoa(bits))
		m := netmask(p)
		back, err := prefixOf("10.0.0.1", m, 0)
		if err != nil || back.Bits() != bits || back.Addr().String() != "10.0.0.1" {
			t.Errorf("/%d: netmask %s reads back as %v", bits, m, back)
		}
	}
	if p, err := prefixOf("172.16.0.1", "", 24); err != nil || p.Masked().String() != "172.16.0.0/24" {
		t.Errorf("prefix attribute: %v, %v", p, err)
	}
	if _, err := prefixOf("10.0.0.1", "255.0.255.0", 0); err == nil || !strings.Contains(err.Error(), "not contiguous") {
		t.Errorf("a netmask with a hole: %v, want an error", err)
	}
}

func TestUUIDAndTargets(t *testing.T) {
	u, ok := parseUUID("6695eb01-f6a4-8304-79aa-97f2502e193f")
	if !ok || uuidString(u) != "6695eb01-f6a4-8304-79aa-97f2502e193f" {
		t.Errorf("uuid round trip: %s %v", uuidString(u), ok)
	}
	used := map[string]bool{"vda": true}
	if got := nextTarget("virtio", used) + nextTarget("scsi", used) + nextTarget("virtio", used); got != "vdbsdavdc" {
		t.Errorf("targets = %s", got)
	}
	if diskLetters(26) != "aa" {
		t.Errorf("diskLetters(26) = %s", diskLetters(26))
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
