package libvirt

import (
	"fmt"

	"go.starlark.net/starlark"

	"github.com/studiorun/studiorun/runtime"
)

// NIC is the value of libvirt.nic: a network interface, on a libvirt
// network or a host bridge, that libvirt.domain attaches. It is not a
// resource of its own; its network becomes a dependency of the domain.
type NIC struct {
	network *runtime.Resource // nil for a NIC on a host bridge
	bridge  string
	mac     runtime.MAC
	model   string
}

var _ starlark.HasAttrs = (*NIC)(nil)

// String returns the call that makes the NIC.
func (n *NIC) String() string {
	on := fmt.Sprintf("bridge = %q", n.bridge)
	if n.network != nil {
		on = "network = " + string(n.network.Address)
	}
	return fmt.Sprintf("libvirt.nic(%s, mac = %q, model = %q)", on, n.mac, n.model)
}

// Type returns "libvirt.nic".
func (*NIC) Type() string { return "libvirt.nic" }

// Freeze does nothing: a NIC is immutable.
func (*NIC) Freeze() {}

// Truth is always true.
func (*NIC) Truth() starlark.Bool { return true }

// Hash fails: NICs are not dict keys.
func (*NIC) Hash() (uint32, error) { return 0, fmt.Errorf("unhashable: libvirt.nic") }

// Attr exposes the NIC's arguments.
func (n *NIC) Attr(name string) (starlark.Value, error) {
	switch name {
	case "network":
		if n.network == nil {
			return starlark.None, nil
		}
		return runtime.NewRef(n.network), nil
	case "bridge":
		if n.network != nil {
			return starlark.None, nil
		}
		return starlark.String(n.bridge), nil
	case "mac":
		return starlark.String(n.mac), nil
	case "model":
		return starlark.String(n.model), nil
	}
	return nil, nil
}

// AttrNames lists the attributes.
func (*NIC) AttrNames() []string { return []string{"bridge", "mac", "model", "network"} }

// nicModels are the NIC models a guest can be given.
var nicModels = []string{"virtio", "e1000", "e1000e", "rtl8139"}

// nic implements libvirt.nic.
func nic(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var network, bridge, mac starlark.Value = starlark.None, starlark.None, starlark.None
	n := &NIC{model: "virtio"}
	if err := starlark.UnpackArgs(b.Name(), args, kwargs,
		"network?", &network, "bridge?", &bridge, "mac?", &mac, "model?", &n.model); err != nil {
		return nil, err
	}
	switch {
	case network != starlark.None && bridge != starlark.None:
		return nil, fmt.Errorf("%s: network and bridge cannot both be given: a NIC is on a libvirt network or on a host bridge", b.Name())
	case network != starlark.None:
		res, err := runtime.UnpackRef(b.Name(), "network", network, networkKinds...)
		if err != nil {
			return nil, err
		}
		n.network = res
	case bridge != starlark.None:
		s, ok := starlark.AsString(bridge)
		if !ok {
			return nil, fmt.Errorf("%s: bridge: got %s, want a host bridge device name such as \"br0\"", b.Name(), bridge.Type())
		}
		if err := checkBridgeName(s); err != nil {
			return nil, fmt.Errorf("%s: %w", b.Name(), err)
		}
		n.bridge = s
	default:
		return nil, fmt.Errorf("%s: want network (a libvirt.network or libvirt.existing_network) or bridge (a host bridge such as \"br0\")", b.Name())
	}
	if mac == starlark.None {
		return nil, fmt.Errorf("%s: mac is required: studiorun gives every NIC a fixed MAC address so that its DHCP reservation and DNS name hold; dhcp.laa(n) makes one", b.Name())
	}
	if err := n.mac.Unpack(mac); err != nil {
		return nil, fmt.Errorf("%s: %w", b.Name(), err)
	}
	if err := checkOneOf(b.Name()+": model", n.model, nicModels...); err != nil {
		return nil, err
	}
	return n, nil
}

// Disk is the value of libvirt.disk: a volume attached to a domain on a
// bus. A bare volume reference in a domain's disks is a virtio disk.
type Disk struct {
	volume *runtime.Resource
	bus    string
}

var _ starlark.HasAttrs = (*Disk)(nil)

// String returns the call that makes the disk.
func (d *Disk) String() string {
	return fmt.Sprintf("libvirt.disk(%s, bus = %q)", d.volume.Address, d.bus)
}

// Type returns "libvirt.disk".
func (*Disk) Type() string { return "libvirt.disk" }

// Freeze does nothing: a disk is immutable.
func (*Disk) Freeze() {}

// Truth is always true.
func (*Disk) Truth() starlark.Bool { return true }

// Hash fails: disks are not dict keys.
func (*Disk) Hash() (uint32, error) { return 0, fmt.Errorf("unhashable: libvirt.disk") }

// Attr exposes the disk's arguments.
func (d *Disk) Attr(name string) (starlark.Value, error) {
	switch name {
	case "volume":
		return runtime.NewRef(d.volume), nil
	case "bus":
		return starlark.String(d.bus), nil
	}
	return nil, nil
}

// AttrNames lists the attributes.
func (*Disk) AttrNames() []string { return []string{"bus", "volume"} }

// diskBuses are the buses a disk can be attached on.
var diskBuses = []string{"virtio", "scsi", "sata"}

// disk implements libvirt.disk.
func disk(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var vol starlark.Value
	d := &Disk{bus: "virtio"}
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "volume", &vol, "bus?", &d.bus); err != nil {
		return nil, err
	}
	res, err := runtime.UnpackRef(b.Name(), "volume", vol, volumeKinds...)
	if err != nil {
		return nil, err
	}
	d.volume = res
	if err := checkOneOf(b.Name()+": bus", d.bus, diskBuses...); err != nil {
		return nil, err
	}
	return d, nil
}
