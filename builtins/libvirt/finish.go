package libvirt

import (
	"fmt"

	"github.com/studiorun/studiorun/builtins/dhcp"
	"github.com/studiorun/studiorun/runtime"
)

// finish runs after evaluation, when every resource is declared: it
// resolves the pools that existing volumes name, checks each domain's
// disks (in a declared pool, not the base of an overlay) and that every
// existing volume's pool is declared, and orders each domain after the
// DHCP reservations of its MACs.
func finish(b *runtime.Builder) error {
	if err := checkDisks(b); err != nil {
		return err
	}
	return orderAfterReservations(b)
}

// checkDisks resolves existing volumes' pools and checks domains' disks.
func checkDisks(b *runtime.Builder) error {
	baseOf := map[runtime.Address]runtime.Address{} // base -> first overlay
	for _, r := range b.Resources() {
		switch spec := r.Spec.(type) {
		case *ExistingVolume:
			if spec.Pool == "" {
				pool := declaredPool(b, spec.poolName, spec.On)
				if pool == nil {
					break
				}
				if err := checkSameHypervisor(describe(r), "pool", pool, spec.On); err != nil {
					return &runtime.Error{Pos: r.Pos, Msg: err.Error()}
				}
				spec.Pool = pool.Address
				b.AddDependency(r, spec.Pool)
			}
		case *Volume:
			if _, seen := baseOf[spec.Base]; spec.Base != "" && !seen {
				baseOf[spec.Base] = r.Address
			}
		}
	}
	for _, r := range b.Resources() {
		spec, ok := r.Spec.(*Domain)
		if !ok {
			continue
		}
		for _, d := range spec.Disks {
			vol := b.Resource(d.Volume)
			if vol == nil {
				continue // from another evaluation: Builder.Plan reports it
			}
			if v, ok := vol.Spec.(*ExistingVolume); ok && v.Pool == "" {
				return &runtime.Error{Pos: r.Pos, Msg: fmt.Sprintf("%s: disk %s is in pool %q, which is declared neither with libvirt.pool nor with libvirt.existing_pool: add libvirt.existing_pool(%q)",
					describe(r), d.Volume, v.poolName, v.poolName)}
			}
			if overlay, ok := baseOf[d.Volume]; ok {
				return &runtime.Error{Pos: r.Pos, Msg: fmt.Sprintf("%s: disk %s is the base of overlay %s: a guest writing to it would corrupt its overlays; attach an overlay instead",
					describe(r), d.Volume, overlay)}
			}
		}
	}
	for _, r := range b.Resources() {
		if v, ok := r.Spec.(*ExistingVolume); ok && v.Pool == "" {
			return &runtime.Error{Pos: r.Pos, Msg: fmt.Sprintf("%s: pool %q is declared neither with libvirt.pool nor with libvirt.existing_pool: add libvirt.existing_pool(%q)",
				describe(r), v.poolName, v.poolName)}
		}
	}
	return nil
}

// declaredPool returns the pool or existing pool with the given libvirt
// name, preferring one on the hypervisor on, or nil.
func declaredPool(b *runtime.Builder, name, on string) *runtime.Resource {
	var found *runtime.Resource
	for _, kind := range poolKinds {
		if r := b.Resource(runtime.Address(kind + "." + name)); r != nil {
			if HypervisorOf(r.Spec) == on {
				return r
			}
			if found == nil {
				found = r
			}
		}
	}
	return found
}

// nicOf is the domain and NIC that hold a MAC address.
type nicOf struct {
	domain *runtime.Resource
	nic    DomainNIC
}

// orderAfterReservations makes each domain depend on the reservations of
// its NICs' MACs, so that a guest's first DHCP request gets its reserved
// address, and refuses a reservation on another libvirt network than the
// NIC it is for.
func orderAfterReservations(b *runtime.Builder) error {
	nics := map[runtime.MAC]nicOf{}
	for _, r := range b.Resources() {
		if spec, ok := r.Spec.(*Domain); ok {
			for _, n := range spec.NICs {
				nics[n.MAC] = nicOf{r, n}
			}
		}
	}
	for _, r := range b.Resources() {
		res, ok := r.Spec.(*dhcp.Reservation)
		if !ok {
			continue
		}
		holder, ok := nics[res.MAC]
		if !ok {
			continue
		}
		if res.Network.Kind() == "libvirt.network" && holder.nic.Network != res.Network {
			on := "bridge " + holder.nic.Bridge
			if holder.nic.Network != "" {
				on = string(holder.nic.Network)
			}
			return &runtime.Error{Pos: r.Pos, Msg: fmt.Sprintf("%s: MAC %s is on %s (the NIC of %s at %s), not on %s, so this reservation would never be used",
				describe(r), res.MAC, on, holder.domain.Address, holder.domain.Pos, res.Network)}
		}
		b.AddDependency(holder.domain, r.Address)
	}
	return nil
}

// describe names a resource as its constructor's errors do:
// libvirt.domain "vfx-dev-001".
func describe(r *runtime.Resource) string { return fmt.Sprintf("%s %q", r.Kind(), r.Name) }
