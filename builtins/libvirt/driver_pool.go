package libvirt

import (
	"fmt"
	"strings"

	golibvirt "github.com/digitalocean/go-libvirt"
	"libvirt.org/go/libvirtxml"

	"github.com/studiorun/studiorun/runtime"
	"github.com/studiorun/studiorun/runtime/apply"
)

// readPool returns a pool's definition, or nil when it does not exist.
func readPool(l *golibvirt.Libvirt, name string) (golibvirt.StoragePool, *libvirtxml.StoragePool, error) {
	p, err := l.StoragePoolLookupByName(name)
	if isNotFound(err) {
		return p, nil, nil
	}
	if err != nil {
		return p, nil, err
	}
	s, err := l.StoragePoolGetXMLDesc(p, 0)
	if err != nil {
		return p, nil, err
	}
	var x libvirtxml.StoragePool
	if err := x.Unmarshal(s); err != nil {
		return p, nil, err
	}
	return p, &x, nil
}

// diffPool compares a storage pool with its declaration. Pools carry no
// metadata: ownership is the state's entry (its UUID).
func (d *Driver) diffPool(l *golibvirt.Libvirt, r *runtime.Resource, spec *Pool, owned *apply.Entry) (*apply.Change, error) {
	p, x, err := readPool(l, r.Name)
	if err != nil {
		return nil, fmt.Errorf("%s: read storage pool %s at %s: %w", r.Address, r.Name, d.uri, err)
	}
	if x == nil {
		return &apply.Change{Action: apply.Create}, nil
	}
	if owned == nil || (owned.ID != "" && owned.ID != uuidString(p.UUID)) {
		return nil, fmt.Errorf("%s: a storage pool %s exists that studiorun did not create; remove it or rename the declaration (or declare it with libvirt.existing_pool)", r.Address, r.Name)
	}
	c := &apply.Change{Action: apply.NoOp}
	if x.Type != spec.Type {
		c.Action = apply.Replace
		c.Attrs = append(c.Attrs, apply.AttrChange{Name: "type", Old: x.Type, New: spec.Type, ForcesReplace: true})
	}
	path := ""
	if x.Target != nil {
		path = x.Target.Path
	}
	if path != spec.Path {
		c.Action = apply.Replace
		c.Attrs = append(c.Attrs, apply.AttrChange{Name: "path", Old: path, New: spec.Path, ForcesReplace: true})
	}
	if c.Action == apply.NoOp {
		state, _, _, _, err := l.StoragePoolGetInfo(p)
		if err != nil {
			return nil, fmt.Errorf("%s: read state of storage pool %s at %s: %w", r.Address, r.Name, d.uri, err)
		}
		if golibvirt.StoragePoolState(state) != golibvirt.StoragePoolRunning {
			c.Action = apply.Update
			c.Attrs = append(c.Attrs, apply.AttrChange{Name: "active", Old: "false", New: "true", Note: "the pool is started"})
		}
	}
	return c, nil
}

// applyPool defines, builds, starts and autostarts a pool.
func (d *Driver) applyPool(l *golibvirt.Libvirt, r *runtime.Resource, spec *Pool, c *apply.Change) (*apply.Entry, error) {
	if c.Action == apply.Replace {
		if err := d.removePool(l, r.Name); err != nil {
			return nil, fmt.Errorf("%s: %w", r.Address, err)
		}
	}
	p, x, err := readPool(l, r.Name)
	if err != nil {
		return nil, fmt.Errorf("%s: read storage pool %s at %s: %w", r.Address, r.Name, d.uri, err)
	}
	if x == nil {
		doc, err := (&libvirtxml.StoragePool{
			Type:   spec.Type,
			Name:   r.Name,
			Target: &libvirtxml.StoragePoolTarget{Path: spec.Path},
		}).Marshal()
		if err != nil {
			return nil, fmt.Errorf("%s: storage pool XML: %w", r.Address, err)
		}
		if p, err = l.StoragePoolDefineXML(doc, 0); err != nil {
			return nil, fmt.Errorf("define storage pool %s at %s: %w", r.Name, d.uri, err)
		}
		// Build makes the directory (a no-op when it exists).
		if err := l.StoragePoolBuild(p, golibvirt.StoragePoolBuildNew); err != nil {
			return nil, fmt.Errorf("build storage pool %s (directory %s) at %s: %w", r.Name, spec.Path, d.uri, err)
		}
	}
	state, _, _, _, err := l.StoragePoolGetInfo(p)
	if err != nil {
		return nil, fmt.Errorf("read state of storage pool %s at %s: %w", r.Name, d.uri, err)
	}
	if golibvirt.StoragePoolState(state) != golibvirt.StoragePoolRunning {
		if err := l.StoragePoolCreate(p, 0); err != nil {
			return nil, fmt.Errorf("start storage pool %s at %s: %w", r.Name, d.uri, err)
		}
	}
	if err := l.StoragePoolSetAutostart(p, 1); err != nil {
		return nil, fmt.Errorf("set autostart of storage pool %s at %s: %w", r.Name, d.uri, err)
	}
	return entry(r, uuidString(p.UUID)), nil
}

// deletePool removes an owned pool if it is empty.
func (d *Driver) deletePool(l *golibvirt.Libvirt, e *apply.Entry) error {
	if u, ok := parseUUID(e.ID); ok {
		p, err := l.StoragePoolLookupByName(e.Name)
		if isNotFound(err) || (err == nil && p.UUID != u) {
			return nil // gone, or another pool of that name: not ours
		}
	}
	if err := d.removePool(l, e.Name); err != nil {
		return fmt.Errorf("%s: %w", e.Address, err)
	}
	return nil
}

// removePool stops and undefines a pool, refusing one that holds
// volumes: they are not studiorun's, or they would have been deleted
// first.
func (d *Driver) removePool(l *golibvirt.Libvirt, name string) error {
	p, err := l.StoragePoolLookupByName(name)
	if isNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("look up storage pool %s at %s: %w", name, d.uri, err)
	}
	state, _, _, _, err := l.StoragePoolGetInfo(p)
	if err != nil {
		return fmt.Errorf("read state of storage pool %s at %s: %w", name, d.uri, err)
	}
	if golibvirt.StoragePoolState(state) == golibvirt.StoragePoolRunning {
		_ = l.StoragePoolRefresh(p, 0)
		vols, _, err := l.StoragePoolListAllVolumes(p, 1, 0)
		if err != nil {
			return fmt.Errorf("list volumes of storage pool %s at %s: %w", name, d.uri, err)
		}
		if len(vols) > 0 {
			names := make([]string, len(vols))
			for i, v := range vols {
				names[i] = v.Name
			}
			return fmt.Errorf("storage pool %s at %s is not empty: it holds %s; studiorun deletes only empty pools, remove them or keep the pool", name, d.uri, strings.Join(names, ", "))
		}
		if err := l.StoragePoolDestroy(p); err != nil && !isNotFound(err) {
			return fmt.Errorf("stop storage pool %s at %s: %w", name, d.uri, err)
		}
	}
	if err := l.StoragePoolUndefine(p); err != nil && !isNotFound(err) {
		return fmt.Errorf("undefine storage pool %s at %s: %w", name, d.uri, err)
	}
	return nil
}
