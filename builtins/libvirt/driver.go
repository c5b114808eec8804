package libvirt

// The libvirt driver (pools, volumes, networks and domains realised on
// libvirtd through go-libvirt, with XML from libvirtxml) lands with the
// apply engine, issue #3.
