package libvirt

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
	"libvirt.org/go/libvirtxml"

	"github.com/studiorun/studiorun/builtins/dhcp"
	"github.com/studiorun/studiorun/runtime"
	"github.com/studiorun/studiorun/runtime/apply"
)

// domainView is what the driver read of an existing domain.
type domainView struct {
	dom     golibvirt.Domain
	config  *libvirtxml.Domain // the persistent definition
	running bool
	auto    bool
}

// readDomain reads a domain by name, or returns nil when it does not exist.
func readDomain(l *golibvirt.Libvirt, name string) (*domainView, error) {
	dom, err := l.DomainLookupByName(name)
	if isNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return readDomainOf(l, dom)
}

func readDomainOf(l *golibvirt.Libvirt, dom golibvirt.Domain) (*domainView, error) {
	s, err := l.DomainGetXMLDesc(dom, golibvirt.DomainXMLInactive)
	if err != nil {
		return nil, err
	}
	v := &domainView{dom: dom, config: &libvirtxml.Domain{}}
	if err := v.config.Unmarshal(s); err != nil {
		return nil, err
	}
	state, _, err := l.DomainGetState(dom, 0)
	if err != nil {
		return nil, err
	}
	v.running = golibvirt.DomainState(state) != golibvirt.DomainShutoff && golibvirt.DomainState(state) != golibvirt.DomainNostate
	auto, err := l.DomainGetAutostart(dom)
	if err != nil {
		return nil, err
	}
	v.auto = auto != 0
	return v, nil
}

// domainOps are the in-place changes that bring a domain to its spec.
type domainOps struct {
	attrs                  []apply.AttrChange
	replace                bool
	setMaxMem, setMem      bool
	setMaxVCPU, setVCPU    bool
	detachDisks            []libvirtxml.DomainDisk
	attachDisks            []diskDevice
	detachNICs, attachNICs []libvirtxml.DomainInterface
	serial                 bool
	kernelBoot             bool
	autostart, start, stop bool
}

// planDomain compares an existing domain with its spec.
func planDomain(v *domainView, spec *Domain, disks []diskDevice) *domainOps {
	ops := &domainOps{}
	x := v.config
	add := func(name, old, new, note string, live bool) {
		c := apply.AttrChange{Name: name, Old: old, New: new, Note: note}
		if slices.Contains(spec.ReplaceOnChange, name) {
			c.ForcesReplace, c.Note = true, ""
			ops.replace = true
		} else if !live && v.running {
			c.Note = "takes effect at next boot"
		}
		ops.attrs = append(ops.attrs, c)
	}
	var haveMaxMem, haveMem int64
	if x.Memory != nil {
		haveMaxMem = memoryMiB(x.Memory.Value, x.Memory.Unit)
		haveMem = haveMaxMem
	}
	if x.CurrentMemory != nil {
		haveMem = memoryMiB(x.CurrentMemory.Value, x.CurrentMemory.Unit)
	}
	wantMaxMem, wantMem := int64(maxMemory(spec)), int64(spec.MemoryMiB)
	if haveMaxMem != wantMaxMem {
		ops.setMaxMem = true
		add("max_memory", strconv.FormatInt(haveMaxMem, 10), strconv.FormatInt(wantMaxMem, 10), "", false)
	}
	if haveMem != wantMem {
		ops.setMem = true
		add("memory", strconv.FormatInt(haveMem, 10), strconv.FormatInt(wantMem, 10), "", wantMem <= haveMaxMem)
	}
	var haveMaxVCPU, haveVCPU int
	if x.VCPU != nil {
		haveMaxVCPU, haveVCPU = int(x.VCPU.Value), int(x.VCPU.Value)
		if x.VCPU.Current != 0 {
			haveVCPU = int(x.VCPU.Current)
		}
	}
	if haveMaxVCPU != maxVCPU(spec) {
		ops.setMaxVCPU = true
		add("max_vcpu", strconv.Itoa(haveMaxVCPU), strconv.Itoa(maxVCPU(spec)), "", false)
	}
	if haveVCPU != spec.VCPU {
		ops.setVCPU = true
		add("vcpu", strconv.Itoa(haveVCPU), strconv.Itoa(spec.VCPU), "", spec.VCPU <= haveMaxVCPU)
	}
	// Disks by path and bus, NICs by their whole definition (MAC,
	// source, model): a changed one is detached and attached again.
	var haveDisks []libvirtxml.DomainDisk
	var haveNICs []libvirtxml.DomainInterface
	hasSerial := false
	if x.Devices != nil {
		haveDisks, haveNICs = x.Devices.Disks, x.Devices.Interfaces
		hasSerial = len(x.Devices.Serials) > 0
	}
	diskKey := func(path, bus string) string { return bus + ":" + path }
	want := map[string]bool{}
	for _, dev := range disks {
		want[diskKey(dev.path, dev.bus)] = true
	}
	have := map[string]bool{}
	for _, hd := range haveDisks {
		if hd.Device != "" && hd.Device != "disk" {
			continue
		}
		p, bus := "", ""
		if hd.Source != nil && hd.Source.File != nil {
			p = hd.Source.File.File
		}
		if hd.Target != nil {
			bus = hd.Target.Bus
		}
		have[diskKey(p, bus)] = true
		if !want[diskKey(p, bus)] {
			ops.detachDisks = append(ops.detachDisks, hd)
			add("disks", p, "", "detached", true)
		}
	}
	for _, dev := range disks {
		if !have[diskKey(dev.path, dev.bus)] {
			ops.attachDisks = append(ops.attachDisks, dev)
			add("disks", "", string(dev.volume), "attached", true)
		}
	}
	wantNIC := map[string]DomainNIC{}
	for _, n := range spec.NICs {
		wantNIC[string(n.MAC)] = n
	}
	haveNIC := map[string]bool{}
	for _, hn := range haveNICs {
		mac := ""
		if hn.MAC != nil {
			mac = hn.MAC.Address
		}
		n, ok := wantNIC[mac]
		if ok && sameNIC(hn, n) {
			haveNIC[mac] = true
			continue
		}
		ops.detachNICs = append(ops.detachNICs, hn)
		add("nics", mac, "", "detached", true)
	}
	for _, n := range spec.NICs {
		if !haveNIC[string(n.MAC)] {
			ops.attachNICs = append(ops.attachNICs, nicXML(n))
			add("nics", "", string(n.MAC), "attached", true)
		}
	}
	if hasSerial != spec.SerialConsole {
		ops.serial = true
		add("serial_console", strconv.FormatBool(hasSerial), strconv.FormatBool(spec.SerialConsole), "", false)
	}
	hk, hi, hc := kernelBoot(x)
	for _, a := range []struct{ name, have, want string }{{"kernel", hk, spec.Kernel}, {"initrd", hi, spec.Initrd}, {"cmdline", hc, spec.Cmdline}} {
		if a.have != a.want {
			ops.kernelBoot = true
			add(a.name, a.have, a.want, "", false)
		}
	}
	if v.auto != spec.Autostart {
		ops.autostart = true
		add("autostart", strconv.FormatBool(v.auto), strconv.FormatBool(spec.Autostart), "", true)
	}
	if v.running != spec.Running {
		ops.start, ops.stop = spec.Running, !spec.Running
		add("running", strconv.FormatBool(v.running), strconv.FormatBool(spec.Running), "", true)
	}
	return ops
}

// sameNIC reports whether an interface matches a NIC's declaration.
func sameNIC(hn libvirtxml.DomainInterface, n DomainNIC) bool {
	model := ""
	if hn.Model != nil {
		model = hn.Model.Type
	}
	if model != n.Model || hn.Source == nil {
		return false
	}
	if n.Network != "" {
		return hn.Source.Network != nil && hn.Source.Network.Network == n.Network.Name()
	}
	return hn.Source.Bridge != nil && hn.Source.Bridge.Bridge == n.Bridge
}

// diffDomain compares a domain with its declaration.
func (d *Driver) diffDomain(l *golibvirt.Libvirt, r *runtime.Resource, spec *Domain, owned *apply.Entry) (*apply.Change, error) {
	v, err := readDomain(l, r.Name)
	if err != nil {
		return nil, fmt.Errorf("%s: read domain %s at %s: %w", r.Address, r.Name, d.uri, err)
	}
	if v == nil {
		return &apply.Change{Action: apply.Create}, nil
	}
	if err := d.checkDomainOwner(r, v, owned); err != nil {
		return nil, err
	}
	disks, err := d.resolveDisks(l, spec)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", r.Address, err)
	}
	ops := planDomain(v, spec, disks)
	c := &apply.Change{Action: apply.NoOp, Attrs: ops.attrs, Private: &domainDiff{running: v.running}}
	switch {
	case ops.replace:
		c.Action = apply.Replace
	case len(ops.attrs) > 0:
		c.Action = apply.Update
	}
	return c, nil
}

// domainDiff is what the diff of an existing domain hands its apply.
type domainDiff struct {
	running bool
	// replug lists the MACs of NICs to unplug and plug again, live: their
	// network is made again in this run, and libvirt does not attach
	// running guests to it.
	replug []string
}

// DependencyReplaced plans what the replace of dep means for r (it
// implements apply.DependencyReplacer, through the hypervisors' router):
// a reservation in a replaced network is made again in the new one; a
// running domain's NICs on it are plugged in again, live.
func DependencyReplaced(r *runtime.Resource, c *apply.Change, dep *runtime.Resource) {
	if _, ok := dep.Spec.(*Network); !ok {
		return
	}
	switch spec := r.Spec.(type) {
	case *dhcp.Reservation:
		if spec.Network == dep.Address {
			c.Action = apply.Replace
			c.Attrs = append([]apply.AttrChange{{Name: string(dep.Address), ForcesReplace: true, Note: "holds it, and is replaced"}}, c.Attrs...)
		}
	case *Domain:
		st, ok := c.Private.(*domainDiff)
		if !ok || !st.running {
			return // a domain that is off joins the new network when it starts
		}
		for _, n := range spec.NICs {
			if n.Network == dep.Address && !slices.Contains(st.replug, string(n.MAC)) {
				st.replug = append(st.replug, string(n.MAC))
				c.Attrs = append(c.Attrs, apply.AttrChange{Name: "nics", Old: string(n.MAC), New: string(n.MAC),
					Note: "unplugged and plugged again, live: " + string(dep.Address) + " is replaced"})
				if c.Action == apply.NoOp {
					c.Action = apply.Update
				}
			}
		}
	}
}

// checkDomainOwner refuses a domain that studiorun did not create for r:
// its metadata names r (a lost state file is recovered this way), or the
// state's entry has its UUID.
func (d *Driver) checkDomainOwner(r *runtime.Resource, v *domainView, owned *apply.Entry) error {
	owner := runtime.Address("")
	if v.config.Metadata != nil {
		owner = ownerOf(v.config.Metadata.XML)
	}
	if owned != nil && owner == "" && (owned.ID == "" || owned.ID == uuidString(v.dom.UUID)) {
		return nil
	}
	return checkOwner(r, "domain", owner)
}

// applyDomain creates, updates in place or replaces a domain.
func (d *Driver) applyDomain(ctx context.Context, l *golibvirt.Libvirt, r *runtime.Resource, spec *Domain, c *apply.Change, rep apply.Reporter) (*apply.Entry, error) {
	v, err := readDomain(l, r.Name)
	if err != nil {
		return nil, fmt.Errorf("%s: read domain %s at %s: %w", r.Address, r.Name, d.uri, err)
	}
	if v != nil && c.Action == apply.Replace {
		if err := d.removeDomain(ctx, l, r.Address, v.dom, time.Duration(spec.ShutdownTimeout), rep); err != nil {
			return nil, err
		}
		v = nil
	}
	disks, err := d.resolveDisks(l, spec)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", r.Address, err)
	}
	if v == nil {
		typ, notice := d.domainType(l)
		if notice != "" {
			rep.Notef(r.Address, "%s", notice)
		}
		doc, err := domainXML(typ, r, spec, disks).Marshal()
		if err != nil {
			return nil, fmt.Errorf("%s: domain XML: %w", r.Address, err)
		}
		dom, err := l.DomainDefineXMLFlags(doc, 0)
		if err != nil {
			return nil, fmt.Errorf("define domain %s at %s: %w", r.Name, d.uri, err)
		}
		if err := l.DomainSetAutostart(dom, boolInt(spec.Autostart)); err != nil {
			return nil, fmt.Errorf("set autostart of domain %s at %s: %w", r.Name, d.uri, err)
		}
		if spec.Running {
			if err := l.DomainCreate(dom); err != nil {
				return entry(r, uuidString(dom.UUID)), fmt.Errorf("start domain %s at %s: %w", r.Name, d.uri, err)
			}
		}
		return entry(r, uuidString(dom.UUID)), nil
	}
	ops := planDomain(v, spec, disks)
	if err := d.updateDomain(ctx, l, r, spec, v, ops, rep); err != nil {
		return entry(r, uuidString(v.dom.UUID)), err
	}
	if st, ok := c.Private.(*domainDiff); ok && v.running {
		for _, n := range spec.NICs {
			mac := string(n.MAC)
			if !slices.Contains(st.replug, mac) || slices.ContainsFunc(ops.attachNICs, func(a libvirtxml.DomainInterface) bool {
				return a.MAC != nil && strings.EqualFold(a.MAC.Address, mac)
			}) {
				continue // not on a replaced network, or attached again just now (changed)
			}
			if err := d.replugNIC(ctx, l, r, v.dom, n, rep); err != nil {
				return entry(r, uuidString(v.dom.UUID)), err
			}
		}
	}
	return entry(r, uuidString(v.dom.UUID)), nil
}

// replugTimeout bounds the wait for a guest to release a NIC that is
// unplugged (ACPI hotplug: the guest's kernel acknowledges it).
const replugTimeout = time.Minute

// replugNIC unplugs a running domain's NIC and plugs it in again, live,
// so that it joins its network made again (libvirt leaves it off the new
// bridge). The persistent definition is unchanged.
func (d *Driver) replugNIC(ctx context.Context, l *golibvirt.Libvirt, r *runtime.Resource, dom golibvirt.Domain, nic DomainNIC, rep apply.Reporter) error {
	mac := string(nic.MAC)
	n := nicXML(nic)
	doc, err := n.Marshal()
	if err != nil {
		return fmt.Errorf("%s: NIC %s: %w", r.Address, mac, err)
	}
	live := uint32(golibvirt.DomainAffectLive)
	rep.Notef(r.Address, "unplugging NIC %s, to plug it into the new network", mac)
	if err := l.DomainDetachDeviceFlags(dom, doc, live); err != nil {
		if isNoSupport(err) {
			rep.Notef(r.Address, "%s cannot hot-plug devices: NIC %s joins the new network when the domain starts again", d.uri, mac)
			return nil
		}
		return fmt.Errorf("unplug NIC %s of domain %s at %s: %w", mac, r.Name, d.uri, err)
	}
	start := time.Now()
	if err := waitNICGone(ctx, l, dom, mac); err != nil {
		return fmt.Errorf("domain %s at %s: %w", r.Name, d.uri, err)
	}
	if err := l.DomainAttachDeviceFlags(dom, doc, live); err != nil {
		return fmt.Errorf("plug NIC %s into domain %s at %s: %w", mac, r.Name, d.uri, err)
	}
	rep.Notef(r.Address, "NIC %s plugged in again (%s)", mac, time.Since(start).Round(100*time.Millisecond))
	return nil
}

// waitNICGone waits until the guest has released the NIC with mac that
// was detached from it, up to replugTimeout.
func waitNICGone(ctx context.Context, l *golibvirt.Libvirt, dom golibvirt.Domain, mac string) error {
	start := time.Now()
	for liveHasNIC(l, dom, mac) {
		if time.Since(start) > replugTimeout {
			return fmt.Errorf("the guest did not release NIC %s within %s (does its kernel take ACPI hotplug?): shut the domain down and start it", mac, replugTimeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return nil
}

// liveHasNIC reports whether a running domain still has a NIC with mac.
func liveHasNIC(l *golibvirt.Libvirt, dom golibvirt.Domain, mac string) bool {
	doc, err := l.DomainGetXMLDesc(dom, 0)
	if err != nil {
		return false
	}
	var x libvirtxml.Domain
	if x.Unmarshal(doc) != nil || x.Devices == nil {
		return false
	}
	return slices.ContainsFunc(x.Devices.Interfaces, func(i libvirtxml.DomainInterface) bool {
		return i.MAC != nil && strings.EqualFold(i.MAC.Address, mac)
	})
}

// updateDomain makes the in-place changes: live and persistent where
// libvirt can, persistent only (next boot) where it cannot.
func (d *Driver) updateDomain(ctx context.Context, l *golibvirt.Libvirt, r *runtime.Resource, spec *Domain, v *domainView, ops *domainOps, rep apply.Reporter) error {
	dom, name := v.dom, r.Name
	live := uint32(0)
	if v.running {
		live = uint32(golibvirt.DomainAffectLive)
	}
	cfg := uint32(golibvirt.DomainAffectConfig)
	fail := func(what string, err error) error {
		return fmt.Errorf("%s domain %s at %s: %w", what, name, d.uri, err)
	}
	if ops.setMaxMem {
		if err := l.DomainSetMemoryFlags(dom, uint64(maxMemory(spec))<<10, uint32(golibvirt.DomainMemMaximum)|cfg); err != nil {
			return fail("set maximum memory of", err)
		}
	}
	if ops.setMem || ops.setMaxMem {
		flags := cfg
		if liveMax := liveMaxMemory(l, dom); v.running && int64(spec.MemoryMiB) <= liveMax {
			flags |= live
		}
		if err := liveAndConfig(flags, func(f uint32) error { return l.DomainSetMemoryFlags(dom, uint64(spec.MemoryMiB)<<10, f) }); err != nil {
			return fail("set memory of", err)
		}
	}
	if ops.setMaxVCPU {
		if err := l.DomainSetVcpusFlags(dom, uint32(maxVCPU(spec)), uint32(golibvirt.DomainVCPUMaximum)|cfg); err != nil {
			return fail("set maximum vCPUs of", err)
		}
	}
	if ops.setVCPU || ops.setMaxVCPU {
		flags := cfg
		if liveMax, err := l.DomainGetMaxVcpus(dom); err == nil && v.running && spec.VCPU <= int(liveMax) {
			flags |= live
		}
		if err := liveAndConfig(flags, func(f uint32) error { return l.DomainSetVcpusFlags(dom, uint32(spec.VCPU), f) }); err != nil {
			return fail("set vCPUs of", err)
		}
	}
	for _, hd := range ops.detachDisks {
		hd.Alias, hd.Address = nil, nil
		doc, err := hd.Marshal()
		if err == nil {
			err = l.DomainDetachDeviceFlags(dom, doc, live|cfg)
		}
		if isNoSupport(err) {
			err = d.editDefinition(l, dom, r.Address, rep, func(x *libvirtxml.Domain) {
				x.Devices.Disks = slices.DeleteFunc(x.Devices.Disks, func(o libvirtxml.DomainDisk) bool { return sameTarget(o, hd) })
			})
		}
		if err != nil {
			return fail("detach disk from", err)
		}
	}
	used := map[string]bool{}
	if fresh, err := readDomainOf(l, dom); err == nil && fresh.config.Devices != nil {
		for _, hd := range fresh.config.Devices.Disks {
			if hd.Target != nil {
				used[hd.Target.Dev] = true
			}
		}
		if !hasSCSIController(fresh.config) && slices.ContainsFunc(ops.attachDisks, func(dev diskDevice) bool { return dev.bus == "scsi" }) {
			ctl := scsiController()
			doc, err := ctl.Marshal()
			if err == nil {
				err = l.DomainAttachDeviceFlags(dom, doc, live|cfg)
			}
			if err != nil {
				return fail("attach a virtio-scsi controller to", err)
			}
		}
	}
	for _, dev := range ops.attachDisks {
		disk := diskXML(dev, nextTarget(dev.bus, used))
		doc, err := disk.Marshal()
		if err == nil {
			err = l.DomainAttachDeviceFlags(dom, doc, live|cfg)
		}
		if isNoSupport(err) {
			err = d.editDefinition(l, dom, r.Address, rep, func(x *libvirtxml.Domain) {
				x.Devices.Disks = append(x.Devices.Disks, disk)
			})
		}
		if err != nil {
			return fail("attach disk "+dev.path+" to", err)
		}
	}
	detachedLive := map[string]bool{} // MACs whose live NIC the guest is releasing
	for _, n := range ops.detachNICs {
		n.Alias, n.Address, n.Target = nil, nil, nil
		doc, err := n.Marshal()
		if err == nil {
			err = l.DomainDetachDeviceFlags(dom, doc, live|cfg)
			if err == nil && live != 0 && n.MAC != nil {
				detachedLive[strings.ToLower(n.MAC.Address)] = true
			}
		}
		if isNoSupport(err) {
			err = d.editDefinition(l, dom, r.Address, rep, func(x *libvirtxml.Domain) {
				x.Devices.Interfaces = slices.DeleteFunc(x.Devices.Interfaces, func(o libvirtxml.DomainInterface) bool {
					return o.MAC != nil && n.MAC != nil && strings.EqualFold(o.MAC.Address, n.MAC.Address)
				})
			})
		}
		if err != nil {
			return fail("detach NIC from", err)
		}
	}
	for _, n := range ops.attachNICs {
		// A NIC changed in place is detached and attached again with its
		// MAC: the guest releases it first (ACPI hotplug takes a moment).
		if n.MAC != nil && detachedLive[strings.ToLower(n.MAC.Address)] {
			if err := waitNICGone(ctx, l, dom, n.MAC.Address); err != nil {
				return fmt.Errorf("domain %s at %s: %w", name, d.uri, err)
			}
		}
		doc, err := n.Marshal()
		if err == nil {
			err = l.DomainAttachDeviceFlags(dom, doc, live|cfg)
		}
		if isNoSupport(err) {
			err = d.editDefinition(l, dom, r.Address, rep, func(x *libvirtxml.Domain) {
				x.Devices.Interfaces = append(x.Devices.Interfaces, n)
			})
		}
		if err != nil {
			return fail("attach NIC "+n.MAC.Address+" to", err)
		}
	}
	if ops.serial {
		if err := d.setSerial(l, dom, spec.SerialConsole); err != nil {
			return fail("change the serial console of", err)
		}
	}
	if ops.kernelBoot {
		if err := d.editDefinition(l, dom, r.Address, nil, func(x *libvirtxml.Domain) {
			if x.OS == nil {
				x.OS = &libvirtxml.DomainOS{}
			}
			setKernelBoot(x.OS, spec)
		}); err != nil {
			return fail("change the kernel boot of", err)
		}
	}
	if ops.autostart {
		if err := l.DomainSetAutostart(dom, boolInt(spec.Autostart)); err != nil {
			return fail("set autostart of", err)
		}
	}
	if ops.start {
		if err := l.DomainCreate(dom); err != nil {
			return fail("start", err)
		}
	}
	if ops.stop {
		if err := d.shutdown(ctx, l, r.Address, dom, time.Duration(spec.ShutdownTimeout), rep); err != nil {
			return err
		}
	}
	return nil
}

// liveMaxMemory returns the running domain's maximum memory in MiB.
func liveMaxMemory(l *golibvirt.Libvirt, dom golibvirt.Domain) int64 {
	_, maxKiB, _, _, _, err := l.DomainGetInfo(dom)
	if err != nil {
		return 0
	}
	return int64(maxKiB >> 10)
}

// setSerial adds or removes the serial console in the persistent
// definition (next boot).
func (d *Driver) setSerial(l *golibvirt.Libvirt, dom golibvirt.Domain, on bool) error {
	v, err := readDomainOf(l, dom)
	if err != nil {
		return err
	}
	x := v.config
	if x.Devices == nil {
		x.Devices = &libvirtxml.DomainDeviceList{}
	}
	x.Devices.Serials, x.Devices.Consoles = nil, nil
	if on {
		x.Devices.Serials = []libvirtxml.DomainSerial{serialXML()}
		x.Devices.Consoles = []libvirtxml.DomainConsole{{
			Source: &libvirtxml.DomainChardevSource{Pty: &libvirtxml.DomainChardevSourcePty{}},
			Target: &libvirtxml.DomainConsoleTarget{Type: "serial"},
		}}
	}
	doc, err := x.Marshal()
	if err != nil {
		return err
	}
	_, err = l.DomainDefineXMLFlags(doc, 0)
	return err
}

// shutdown asks the guest to power off, waits up to timeout, then forces
// it off.
func (d *Driver) shutdown(ctx context.Context, l *golibvirt.Libvirt, addr runtime.Address, dom golibvirt.Domain, timeout time.Duration, rep apply.Reporter) error {
	if timeout <= 0 {
		timeout = 2 * time.Minute
	}
	running := func() bool {
		state, _, err := l.DomainGetState(dom, 0)
		return err == nil && golibvirt.DomainState(state) != golibvirt.DomainShutoff
	}
	if !running() {
		return nil
	}
	if err := l.DomainShutdown(dom); err == nil {
		start := time.Now()
		// A note at every tenth of the timeout (at least a second apart).
		every := max(timeout/10, time.Second).Truncate(time.Second)
		said := time.Duration(0)
		for running() && time.Since(start) < timeout {
			if waited := time.Since(start).Truncate(every); rep != nil && waited > said {
				said = waited
				rep.Notef(addr, "waiting for the guest to shut down: %s of %s", waited, timeout)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(500 * time.Millisecond):
			}
		}
	}
	if running() {
		if rep != nil {
			rep.Notef(addr, "the guest did not shut down within %s: forcing it off", timeout)
		}
		// The guest may power off between the check and the destroy:
		// then it is off, as asked.
		if err := l.DomainDestroy(dom); err != nil && !isNotFound(err) && running() {
			return fmt.Errorf("%s: force off domain %s at %s: %w", addr, dom.Name, d.uri, err)
		}
	}
	return nil
}

// removeDomain shuts down and undefines a domain, keeping its volumes.
func (d *Driver) removeDomain(ctx context.Context, l *golibvirt.Libvirt, addr runtime.Address, dom golibvirt.Domain, timeout time.Duration, rep apply.Reporter) error {
	if err := d.shutdown(ctx, l, addr, dom, timeout, rep); err != nil {
		return err
	}
	err := l.DomainUndefineFlags(dom, golibvirt.DomainUndefineManagedSave|golibvirt.DomainUndefineNvram)
	if err != nil && !isNotFound(err) {
		// Drivers without managed save or NVRAM refuse the flags.
		err = l.DomainUndefine(dom)
	}
	if err != nil && !isNotFound(err) {
		return fmt.Errorf("%s: undefine domain %s at %s: %w", addr, dom.Name, d.uri, err)
	}
	return nil
}

// deleteDomain removes an owned domain, found by its UUID so that a
// same-named domain that studiorun did not create is never touched.
func (d *Driver) deleteDomain(ctx context.Context, l *golibvirt.Libvirt, e *apply.Entry, rep apply.Reporter) error {
	var spec struct {
		ShutdownTimeout string `json:"shutdown_timeout"`
	}
	_ = json.Unmarshal(e.Spec, &spec)
	timeout, _ := time.ParseDuration(spec.ShutdownTimeout)
	var dom golibvirt.Domain
	var err error
	if u, ok := parseUUID(e.ID); ok {
		dom, err = l.DomainLookupByUUID(u)
	} else {
		// No UUID (an interrupted create): only a domain whose metadata
		// names this address is ours.
		var v *domainView
		v, err = readDomain(l, e.Name)
		if err == nil && v == nil {
			return nil
		}
		if err == nil {
			if v.config.Metadata == nil || ownerOf(v.config.Metadata.XML) != e.Address {
				return nil
			}
			dom = v.dom
		}
	}
	if isNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s: look up domain %s at %s: %w", e.Address, e.Name, d.uri, err)
	}
	return d.removeDomain(ctx, l, e.Address, dom, timeout, rep)
}

// parseUUID reads a UUID in its usual text form.
func parseUUID(s string) (golibvirt.UUID, bool) {
	var u golibvirt.UUID
	hex := make([]byte, 0, 32)
	for i := 0; i < len(s); i++ {
		if s[i] != '-' {
			hex = append(hex, s[i])
		}
	}
	if len(hex) != 32 {
		return u, false
	}
	for i := range u {
		b, err := strconv.ParseUint(string(hex[2*i:2*i+2]), 16, 8)
		if err != nil {
			return u, false
		}
		u[i] = byte(b)
	}
	return u, true
}

// liveAndConfig makes a change with flags (live and config together);
// when the hypervisor driver refuses the pair (libvirt's test driver says
// they are "mutually exclusive"), it makes the change in the definition,
// then live.
func liveAndConfig(flags uint32, set func(uint32) error) error {
	err := set(flags)
	both := uint32(golibvirt.DomainAffectLive | golibvirt.DomainAffectConfig)
	if err == nil || flags&both != both {
		return err
	}
	if err := set(flags &^ uint32(golibvirt.DomainAffectLive)); err != nil {
		return err
	}
	return set(flags &^ uint32(golibvirt.DomainAffectConfig))
}

// isNoSupport reports whether err is libvirt's "this function is not
// supported by the connection driver".
func isNoSupport(err error) bool {
	var e golibvirt.Error
	return errors.As(err, &e) && golibvirt.ErrorNumber(e.Code) == golibvirt.ErrNoSupport
}

// editDefinition changes the persistent definition of a domain, for a
// hypervisor driver that cannot hot-plug (libvirt's test driver): the
// change takes effect at the next boot.
func (d *Driver) editDefinition(l *golibvirt.Libvirt, dom golibvirt.Domain, addr runtime.Address, rep apply.Reporter, edit func(*libvirtxml.Domain)) error {
	v, err := readDomainOf(l, dom)
	if err != nil {
		return err
	}
	if v.config.Devices == nil {
		v.config.Devices = &libvirtxml.DomainDeviceList{}
	}
	edit(v.config)
	doc, err := v.config.Marshal()
	if err != nil {
		return err
	}
	if _, err := l.DomainDefineXMLFlags(doc, 0); err != nil {
		return err
	}
	if rep != nil && v.running {
		rep.Notef(addr, "%s cannot hot-plug devices: the change takes effect at next boot", d.uri)
	}
	return nil
}

// sameTarget reports whether two disks are on the same target device.
func sameTarget(a, b libvirtxml.DomainDisk) bool {
	return a.Target != nil && b.Target != nil && a.Target.Dev == b.Target.Dev
}
