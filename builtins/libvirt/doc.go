// Package libvirt is the Starlark module libvirt: the storage pools,
// volumes, networks and domains (guests) of a libvirt host, declared in a
// script and realised by the libvirt driver.
//
// Each constructor validates its arguments, declares a resource of kind
// "libvirt.<kind>" and returns a reference that other declarations take
// (a volume's pool, a disk's volume, a NIC's network); each reference is a
// dependency. libvirt.nic and libvirt.disk make values, not resources:
// the domain that lists them records them.
//
//	pool = libvirt.pool("studio", path = "/var/lib/libvirt/images/studio")
//	soe = libvirt.volume("soe.qcow2", pool = pool, source = "//build/soe.qcow2")
//	disk = libvirt.volume("vfx-dev-001.qcow2", pool = pool, base = soe)
//	net = libvirt.network("studio", subnet = "172.16.0.0/24",
//	                      dhcp_range = ("172.16.0.2", "172.16.0.9"), domain = "studio.lan")
//	libvirt.domain("vfx-dev-001", vcpu = 2, memory = "1GiB",
//	               disks = [libvirt.disk(disk, bus = "scsi")],
//	               nics = [libvirt.nic(network = net, mac = dhcp.laa(1))])
//	dhcp.reservation(net, mac = dhcp.laa(1), ip = "172.16.0.11", hostname = "vfx-dev-001")
//
// Objects the script uses but does not own (the "default" network, a pool
// made by hand) are declared with libvirt.existing_pool,
// libvirt.existing_volume and libvirt.existing_network; the driver reads
// them and never changes or deletes them.
//
// Checks that need the whole script run after evaluation: a domain's disk
// in a pool that is declared nowhere, a disk that is the base of an
// overlay, a DHCP reservation on another network than its NIC. A domain
// is ordered after the DHCP reservations of its MACs, so that a guest's
// first DHCP request gets its reserved address.
package libvirt
