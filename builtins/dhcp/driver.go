package dhcp

// The dhcp driver (reservations realised in a libvirt network's DHCP and DNS
// host entries, and dnsmasq dhcp-hosts files) lands with the apply engine.
