package libvirt

import (
	"fmt"
	"path"

	golibvirt "github.com/digitalocean/go-libvirt"
	"libvirt.org/go/libvirtxml"

	"github.com/studiorun/studiorun/runtime"
)

// maxVCPU returns the domain's maximum vCPU count.
func maxVCPU(spec *Domain) int {
	if spec.MaxVCPU > 0 {
		return spec.MaxVCPU
	}
	return spec.VCPU
}

// maxMemory returns the domain's maximum memory in MiB.
func maxMemory(spec *Domain) runtime.MiB {
	if spec.MaxMemoryMiB > 0 {
		return spec.MaxMemoryMiB
	}
	return spec.MemoryMiB
}

// diskDevice is a disk as the driver attaches it.
type diskDevice struct {
	volume runtime.Address
	path   string // on the hypervisor
	format string // the volume's format: qcow2 or raw
	bus    string
}

// resolveDisks finds the path and format of each of the domain's disks.
func (d *Driver) resolveDisks(l *golibvirt.Libvirt, spec *Domain) ([]diskDevice, error) {
	out := make([]diskDevice, 0, len(spec.Disks))
	for _, disk := range spec.Disks {
		dev := diskDevice{volume: disk.Volume, bus: disk.Bus, format: "qcow2"}
		pool := d.volumePool(disk.Volume)
		if v, ok := d.resourceSpec(disk.Volume).(*Volume); ok {
			dev.format = v.Format
		}
		if pool != "" {
			if _, x, err := readVolume(l, pool.Name(), disk.Volume.Name()); err == nil && x != nil && x.Target != nil {
				dev.path = x.Target.Path
				if x.Target.Format != nil && x.Target.Format.Type != "" {
					dev.format = x.Target.Format.Type
				}
			}
			if dev.path == "" {
				if dir := d.poolPath(l, pool); dir != "" {
					dev.path = path.Join(dir, disk.Volume.Name())
				}
			}
		}
		if dev.path == "" {
			return nil, fmt.Errorf("disk %s: cannot find its pool's directory (the driver has not seen the volume's declaration)", disk.Volume)
		}
		out = append(out, dev)
	}
	return out, nil
}

// diskXML returns the <disk> of a volume attached as target dev.
func diskXML(dev diskDevice, target string) libvirtxml.DomainDisk {
	return libvirtxml.DomainDisk{
		Device: "disk",
		Driver: &libvirtxml.DomainDiskDriver{Name: "qemu", Type: dev.format},
		Source: &libvirtxml.DomainDiskSource{File: &libvirtxml.DomainDiskSourceFile{File: dev.path}},
		Target: &libvirtxml.DomainDiskTarget{Dev: target, Bus: dev.bus},
	}
}

// nicXML returns the <interface> of a NIC.
func nicXML(n DomainNIC) libvirtxml.DomainInterface {
	i := libvirtxml.DomainInterface{
		MAC:   &libvirtxml.DomainInterfaceMAC{Address: string(n.MAC)},
		Model: &libvirtxml.DomainInterfaceModel{Type: n.Model},
	}
	if n.Network != "" {
		i.Source = &libvirtxml.DomainInterfaceSource{Network: &libvirtxml.DomainInterfaceSourceNetwork{Network: n.Network.Name()}}
	} else {
		i.Source = &libvirtxml.DomainInterfaceSource{Bridge: &libvirtxml.DomainInterfaceSourceBridge{Bridge: n.Bridge}}
	}
	return i
}

// targetPrefix is the device name prefix of a bus: vd for virtio, sd for
// scsi and sata.
func targetPrefix(bus string) string {
	if bus == "virtio" {
		return "vd"
	}
	return "sd"
}

// nextTarget returns the first free target name of a bus ("vda", "sdb").
func nextTarget(bus string, used map[string]bool) string {
	p := targetPrefix(bus)
	for i := 0; ; i++ {
		name := p + diskLetters(i)
		if !used[name] {
			used[name] = true
			return name
		}
	}
}

// diskLetters is the suffix of the i-th disk: a..z, aa..zz.
func diskLetters(i int) string {
	if i < 26 {
		return string(rune('a' + i))
	}
	return diskLetters(i/26-1) + string(rune('a'+i%26))
}

// scsiController is the virtio-scsi controller that SCSI disks need.
func scsiController() libvirtxml.DomainController {
	zero := uint(0)
	return libvirtxml.DomainController{Type: "scsi", Index: &zero, Model: "virtio-scsi"}
}

// hasSCSIController reports whether a domain has a SCSI controller.
func hasSCSIController(x *libvirtxml.Domain) bool {
	if x.Devices == nil {
		return false
	}
	for _, c := range x.Devices.Controllers {
		if c.Type == "scsi" {
			return true
		}
	}
	return false
}

// domainXML builds the definition of a new domain of type typ.
func domainXML(typ string, r *runtime.Resource, spec *Domain, disks []diskDevice) *libvirtxml.Domain {
	x := &libvirtxml.Domain{
		Type:          typ,
		Name:          r.Name,
		Metadata:      &libvirtxml.DomainMetadata{XML: ownerXML(r.Address)},
		Memory:        &libvirtxml.DomainMemory{Value: uint(maxMemory(spec)), Unit: "MiB"},
		CurrentMemory: &libvirtxml.DomainCurrentMemory{Value: uint(spec.MemoryMiB), Unit: "MiB"},
		VCPU:          &libvirtxml.DomainVCPU{Placement: "static", Value: uint(maxVCPU(spec)), Current: uint(spec.VCPU)},
		OS:            &libvirtxml.DomainOS{Type: &libvirtxml.DomainOSType{Type: "hvm"}},
		// ACPI lets DomainShutdown ask the guest to power off.
		Features:   &libvirtxml.DomainFeatureList{ACPI: &libvirtxml.DomainFeature{}},
		OnPoweroff: "destroy",
		OnReboot:   "restart",
		OnCrash:    "destroy",
		Devices:    &libvirtxml.DomainDeviceList{},
	}
	if x.Type != "test" {
		x.OS.Type.Arch = "x86_64"
		x.Features.APIC = &libvirtxml.DomainFeatureAPIC{}
	}
	setKernelBoot(x.OS, spec)
	used := map[string]bool{}
	scsi := false
	for _, dev := range disks {
		x.Devices.Disks = append(x.Devices.Disks, diskXML(dev, nextTarget(dev.bus, used)))
		scsi = scsi || dev.bus == "scsi"
	}
	if scsi {
		x.Devices.Controllers = append(x.Devices.Controllers, scsiController())
	}
	for _, n := range spec.NICs {
		x.Devices.Interfaces = append(x.Devices.Interfaces, nicXML(n))
	}
	if spec.SerialConsole {
		x.Devices.Serials = []libvirtxml.DomainSerial{serialXML()}
		x.Devices.Consoles = []libvirtxml.DomainConsole{{
			Source: &libvirtxml.DomainChardevSource{Pty: &libvirtxml.DomainChardevSourcePty{}},
			Target: &libvirtxml.DomainConsoleTarget{Type: "serial"},
		}}
	}
	return x
}

// setKernelBoot sets the direct kernel boot of a domain's <os>: its
// <kernel>, <initrd> and <cmdline>, or none of them.
func setKernelBoot(o *libvirtxml.DomainOS, spec *Domain) {
	o.Kernel, o.Initrd, o.Cmdline = spec.Kernel, spec.Initrd, spec.Cmdline
}

// kernelBoot returns the direct kernel boot of a domain's definition as
// the arguments of libvirt.domain name it.
func kernelBoot(x *libvirtxml.Domain) (kernel, initrd, cmdline string) {
	if x.OS == nil {
		return "", "", ""
	}
	return x.OS.Kernel, x.OS.Initrd, x.OS.Cmdline
}

// serialXML is the guest's serial port on a pty (virsh console).
func serialXML() libvirtxml.DomainSerial {
	zero := uint(0)
	return libvirtxml.DomainSerial{
		Source: &libvirtxml.DomainChardevSource{Pty: &libvirtxml.DomainChardevSourcePty{}},
		Target: &libvirtxml.DomainSerialTarget{Port: &zero},
	}
}

// memoryMiB reads a memory element's value in MiB.
func memoryMiB(value uint, unit string) int64 {
	v := int64(value)
	switch unit {
	case "", "KiB", "k", "K":
		return v >> 10
	case "b", "bytes":
		return v >> 20
	case "MiB", "M", "m":
		return v
	case "GiB", "G", "g":
		return v << 10
	}
	return v >> 10
}

// domainDevice marshals one device for attach/detach.
func domainDevice(dev interface{ Marshal() (string, error) }) (string, error) {
	return dev.Marshal()
}
