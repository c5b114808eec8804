package libvirt

import (
	"fmt"
	"path"
	"slices"
	"time"

	"go.starlark.net/starlark"

	"github.com/studiorun/studiorun/runtime"
)

// Domain is the spec of libvirt.domain: a guest with its CPUs, memory,
// disks and NICs, and how studiorun runs it.
type Domain struct {
	VCPU            int              `json:"vcpu"`
	MaxVCPU         int              `json:"max_vcpu,omitempty"`
	MemoryMiB       runtime.MiB      `json:"memory_mib"`
	MaxMemoryMiB    runtime.MiB      `json:"max_memory_mib,omitempty"`
	Disks           []DomainDisk     `json:"disks"`
	NICs            []DomainNIC      `json:"nics"`
	Autostart       bool             `json:"autostart"`
	Running         bool             `json:"running"`
	SerialConsole   bool             `json:"serial_console"`
	ShutdownTimeout runtime.Duration `json:"shutdown_timeout"`
	ReplaceOnChange []string         `json:"replace_on_change"`
	// Direct kernel boot: paths on the hypervisor, and the kernel's
	// command line.
	Kernel  string `json:"kernel,omitempty"`
	Initrd  string `json:"initrd,omitempty"`
	Cmdline string `json:"cmdline,omitempty"`
	// On is the hypervisor's URI; "" for --libvirt-uri.
	On string `json:"on,omitempty"`
}

// DomainDisk is a volume attached to a domain.
type DomainDisk struct {
	Volume runtime.Address `json:"volume"`
	Bus    string          `json:"bus"`
}

// DomainNIC is a network interface of a domain, on a libvirt network or
// a host bridge.
type DomainNIC struct {
	Network runtime.Address `json:"network,omitempty"`
	Bridge  string          `json:"bridge,omitempty"`
	MAC     runtime.MAC     `json:"mac"`
	Model   string          `json:"model"`
}

// Kind implements runtime.Spec.
func (*Domain) Kind() string { return "libvirt.domain" }

// maxVCPU bounds vcpu and max_vcpu: libvirt's limit for KVM guests.
const maxVCPUs = 4096

// replaceable are the arguments of libvirt.domain whose change a script
// may ask to apply by replacing the domain instead of in place.
var replaceable = []string{"disks", "max_memory", "max_vcpu", "memory", "nics", "serial_console", "vcpu"}

// unpackAfter returns the domains that after= names: the domain starts
// after them and, when it goes, is shut down before them (an NFS client
// before its server).
func unpackAfter(where string, after starlark.Value) ([]runtime.Address, error) {
	seq, ok := after.(starlark.Indexable)
	if !ok || after.Type() == "string" {
		return nil, fmt.Errorf("%s: after: got %s, want a list of libvirt.domain values", where, after.Type())
	}
	var deps []runtime.Address
	for i := 0; i < seq.Len(); i++ {
		v := seq.Index(i)
		ref, ok := v.(runtime.Referent)
		if !ok || ref.Resource().Kind() != "libvirt.domain" {
			got := v.Type()
			if ok {
				got = string(ref.Resource().Address)
			}
			return nil, fmt.Errorf("%s: after[%d]: got %s, want a libvirt.domain value", where, i, got)
		}
		deps = append(deps, ref.Resource().Address)
	}
	return deps, nil
}

// domain implements libvirt.domain.
func domain(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var name string
	var memory starlark.Value = starlark.MakeInt(1024)
	var maxVCPUArg, maxMemory, on starlark.Value = starlark.None, starlark.None, starlark.None
	var shutdownTimeout starlark.Value = starlark.String("2m")
	disks, nics, replaceOnChange := starlark.Value(starlark.NewList(nil)), starlark.Value(starlark.NewList(nil)), starlark.Value(starlark.NewList(nil))
	after := starlark.Value(starlark.NewList(nil))
	spec := Domain{VCPU: 1, Running: true, SerialConsole: true}
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "name", &name, "vcpu?", &spec.VCPU, "memory?", &memory,
		"disks?", &disks, "nics?", &nics, "max_vcpu?", &maxVCPUArg, "max_memory?", &maxMemory,
		"autostart?", &spec.Autostart, "running?", &spec.Running, "serial_console?", &spec.SerialConsole,
		"shutdown_timeout?", &shutdownTimeout, "replace_on_change?", &replaceOnChange,
		"kernel?", &spec.Kernel, "initrd?", &spec.Initrd, "cmdline?", &spec.Cmdline, "on?", &on, "after?", &after); err != nil {
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
	if err := unpackResources(&spec, memory, maxVCPUArg, maxMemory); err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	if err := spec.ShutdownTimeout.Unpack(shutdownTimeout); err != nil {
		return nil, fmt.Errorf("%s: shutdown_timeout: %w", where, err)
	}
	if time.Duration(spec.ShutdownTimeout) < time.Second {
		return nil, fmt.Errorf("%s: shutdown_timeout %s: want 1s or more, the time a guest has to shut down before it is forced off", where, spec.ShutdownTimeout)
	}
	if err := checkKernelBoot(&spec); err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	if spec.ReplaceOnChange, err = unpackReplaceOnChange(replaceOnChange); err != nil {
		return nil, fmt.Errorf("%s: replace_on_change: %w", where, err)
	}
	diskDeps, err := unpackDisks(&spec, disks)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	nicDeps, err := unpackNICs(&spec, nics)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	afterDeps, err := unpackAfter(where, after)
	if err != nil {
		return nil, err
	}
	if err := checkDomainHypervisor(thread, b.Name(), where, &spec); err != nil {
		return nil, err
	}
	if err := checkRedeclared(thread, b.Name(), spec.Kind(), name, spec.On); err != nil {
		return nil, err
	}
	r, err := runtime.Declare(thread, b.Name(), name, &spec, slices.Concat(diskDeps, nicDeps, afterDeps)...)
	if err != nil {
		return nil, err
	}
	var keys []uniqueKey
	for _, d := range spec.Disks {
		keys = append(keys, uniqueKey{namespace: "libvirt.disk", key: string(d.Volume), what: "disk " + string(d.Volume),
			hint: "a volume is the disk of one domain only; give each domain its own overlay with libvirt.volume(..., base = ...)"})
	}
	for _, n := range spec.NICs {
		keys = append(keys, uniqueKey{namespace: "libvirt.mac", key: string(n.MAC), what: "MAC " + string(n.MAC)})
	}
	if err := claim(thread, b.Name(), where, r, keys...); err != nil {
		return nil, err
	}
	bld, _ := runtime.BuilderOf(thread, b.Name())
	bld.OnFinish("libvirt", finish)
	return runtime.NewRef(r), nil
}

// unpackResources reads the domain's CPUs and memory and checks their
// bounds.
func unpackResources(spec *Domain, memory, maxVCPU, maxMemory starlark.Value) error {
	if spec.VCPU < 1 || spec.VCPU > maxVCPUs {
		return fmt.Errorf("vcpu %d: want 1 to %d", spec.VCPU, maxVCPUs)
	}
	if maxVCPU != starlark.None {
		if err := starlark.AsInt(maxVCPU, &spec.MaxVCPU); err != nil {
			return fmt.Errorf("max_vcpu: %w", err)
		}
		switch {
		case spec.MaxVCPU > maxVCPUs:
			return fmt.Errorf("max_vcpu %d: want at most %d", spec.MaxVCPU, maxVCPUs)
		case spec.MaxVCPU < spec.VCPU:
			return fmt.Errorf("vcpu %d is more than max_vcpu %d", spec.VCPU, spec.MaxVCPU)
		}
	}
	var err error
	if spec.MemoryMiB, err = unpackSize("memory", memory); err != nil {
		return err
	}
	if maxMemory != starlark.None {
		if spec.MaxMemoryMiB, err = unpackSize("max_memory", maxMemory); err != nil {
			return err
		}
		if spec.MaxMemoryMiB < spec.MemoryMiB {
			return fmt.Errorf("max_memory %d MiB is less than memory %d MiB", spec.MaxMemoryMiB, spec.MemoryMiB)
		}
	}
	return nil
}

// checkKernelBoot checks the direct kernel boot arguments: kernel and
// initrd are absolute paths on the hypervisor, and initrd and cmdline
// need a kernel.
func checkKernelBoot(spec *Domain) error {
	if spec.Kernel == "" {
		switch {
		case spec.Initrd != "":
			return fmt.Errorf("initrd %q needs kernel, the path on the hypervisor of the kernel that boots with it", spec.Initrd)
		case spec.Cmdline != "":
			return fmt.Errorf("cmdline %q needs kernel, the path on the hypervisor of the kernel it is passed to", spec.Cmdline)
		}
		return nil
	}
	for _, f := range []struct{ arg, p, example string }{
		{"kernel", spec.Kernel, "/var/lib/libvirt/boot/vmlinuz"},
		{"initrd", spec.Initrd, "/var/lib/libvirt/boot/initrd.img"},
	} {
		if f.p != "" && (!path.IsAbs(f.p) || path.Clean(f.p) != f.p || f.p == "/") {
			return fmt.Errorf("%s %q: want an absolute path on the hypervisor such as %q", f.arg, f.p, f.example)
		}
	}
	return nil
}

// unpackReplaceOnChange reads a list of replaceable argument names.
func unpackReplaceOnChange(v starlark.Value) ([]string, error) {
	items, err := listItems(v, "a list of argument names such as [\"memory\"]")
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(items))
	seen := map[string]bool{}
	for _, item := range items {
		s, ok := starlark.AsString(item)
		if !ok {
			return nil, fmt.Errorf("got %s, want an argument name such as \"memory\"", item.Type())
		}
		if err := checkOneOf("argument", s, replaceable...); err != nil {
			return nil, err
		}
		if seen[s] {
			return nil, fmt.Errorf("%q is listed twice", s)
		}
		seen[s] = true
		names = append(names, s)
	}
	return names, nil
}

// unpackDisks reads the disks (libvirt.disk values or bare volume
// references) and returns the volumes the domain depends on.
func unpackDisks(spec *Domain, v starlark.Value) ([]runtime.Address, error) {
	items, err := listItems(v, "a list of libvirt.disk(...) or volumes")
	if err != nil {
		return nil, fmt.Errorf("disks: %w", err)
	}
	spec.Disks = make([]DomainDisk, 0, len(items))
	var deps []runtime.Address
	for i, item := range items {
		d, ok := item.(*Disk)
		if !ok {
			if d, ok = bareVolume(item); !ok {
				return nil, fmt.Errorf("disks[%d]: got %s, want libvirt.disk(...) or a libvirt.volume or libvirt.existing_volume", i, item)
			}
		}
		for j, prev := range spec.Disks {
			if prev.Volume == d.volume.Address {
				return nil, fmt.Errorf("disks[%d] and disks[%d] are both %s", j, i, prev.Volume)
			}
		}
		spec.Disks = append(spec.Disks, DomainDisk{Volume: d.volume.Address, Bus: d.bus})
		deps = append(deps, d.volume.Address)
	}
	return deps, nil
}

// unpackNICs reads the NICs (libvirt.nic values) and returns the networks
// the domain depends on.
func unpackNICs(spec *Domain, v starlark.Value) ([]runtime.Address, error) {
	items, err := listItems(v, "a list of libvirt.nic(...)")
	if err != nil {
		return nil, fmt.Errorf("nics: %w", err)
	}
	spec.NICs = make([]DomainNIC, 0, len(items))
	var deps []runtime.Address
	for i, item := range items {
		n, ok := item.(*NIC)
		if !ok {
			return nil, fmt.Errorf("nics[%d]: got %s, want libvirt.nic(...)", i, item.Type())
		}
		for j, prev := range spec.NICs {
			if prev.MAC == n.mac {
				return nil, fmt.Errorf("nics[%d] and nics[%d] both have MAC %s", j, i, n.mac)
			}
		}
		dn := DomainNIC{Bridge: n.bridge, MAC: n.mac, Model: n.model}
		if n.network != nil {
			dn.Network = n.network.Address
			deps = append(deps, dn.Network)
		}
		spec.NICs = append(spec.NICs, dn)
	}
	return deps, nil
}

// bareVolume reads a volume reference in a domain's disks as a virtio disk.
func bareVolume(v starlark.Value) (*Disk, bool) {
	ref, ok := v.(runtime.Referent)
	if !ok {
		return nil, false
	}
	for _, k := range volumeKinds {
		if ref.Resource().Kind() == k {
			return &Disk{volume: ref.Resource(), bus: "virtio"}, true
		}
	}
	return nil, false
}

// listItems returns the elements of a list or tuple; want describes the
// expected value in the error.
func listItems(v starlark.Value, want string) ([]starlark.Value, error) {
	seq, ok := v.(starlark.Indexable)
	if _, isString := v.(starlark.String); isString || !ok {
		return nil, fmt.Errorf("got %s, want %s", v.Type(), want)
	}
	items := make([]starlark.Value, seq.Len())
	for i := range items {
		items[i] = seq.Index(i)
	}
	return items, nil
}

// checkDomainHypervisor refuses a disk volume or a NIC network on another
// hypervisor than the domain's.
func checkDomainHypervisor(thread *starlark.Thread, fn, where string, spec *Domain) error {
	bld, err := runtime.BuilderOf(thread, fn)
	if err != nil {
		return err
	}
	for _, d := range spec.Disks {
		if vol := bld.Resource(d.Volume); vol != nil {
			if err := checkSameHypervisor(where, "disk", vol, spec.On); err != nil {
				return err
			}
		}
	}
	for _, n := range spec.NICs {
		if n.Network == "" {
			continue
		}
		if net := bld.Resource(n.Network); net != nil {
			if err := checkSameHypervisor(where, "NIC network", net, spec.On); err != nil {
				return err
			}
		}
	}
	return nil
}
