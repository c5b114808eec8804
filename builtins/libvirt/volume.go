package libvirt

import (
	"errors"
	"fmt"

	"go.starlark.net/starlark"

	"github.com/studiorun/studiorun/runtime"
)

// Volume is the spec of libvirt.volume: a storage volume that the script
// owns, made in one of three ways: uploaded from a local image file
// (Source), a copy-on-write overlay on another volume (Base, optionally
// grown to SizeMiB), or blank (SizeMiB).
type Volume struct {
	Pool    runtime.Address `json:"pool"`
	Format  string          `json:"format"`
	Source  string          `json:"source,omitempty"` // relative to the project root, or absolute
	Base    runtime.Address `json:"base,omitempty"`
	SizeMiB runtime.MiB     `json:"size_mib,omitempty"`
	On      string          `json:"on,omitempty"` // the hypervisor's URI; "" for --libvirt-uri
}

// Kind implements runtime.Spec.
func (*Volume) Kind() string { return "libvirt.volume" }

// ExistingVolume is the spec of libvirt.existing_volume: a volume that the
// script uses but does not own. A pool given by name is resolved to a
// declared pool after evaluation.
type ExistingVolume struct {
	Pool     runtime.Address `json:"pool"`
	On       string          `json:"on,omitempty"`
	poolName string
}

// Kind implements runtime.Spec.
func (*ExistingVolume) Kind() string { return "libvirt.existing_volume" }

// volumeKinds are the kinds a disk or an overlay's base may refer to.
var volumeKinds = []string{"libvirt.volume", "libvirt.existing_volume"}

// errVolumeOrigin says what libvirt.volume needs to know.
var errVolumeOrigin = errors.New("want exactly one of source (a local image file to upload), base (a volume to overlay, copy-on-write) or size (a blank volume)")

// volume implements libvirt.volume.
func volume(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var name string
	var poolArg starlark.Value
	var source, base, size, on starlark.Value = starlark.None, starlark.None, starlark.None, starlark.None
	spec := Volume{Format: "qcow2"}
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "name", &name, "pool", &poolArg,
		"source?", &source, "base?", &base, "size?", &size, "format?", &spec.Format, "on?", &on); err != nil {
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
	poolRes, err := runtime.UnpackRef(where, "pool", poolArg, poolKinds...)
	if err != nil {
		return nil, err
	}
	if err := checkSameHypervisor(where, "pool", poolRes, spec.On); err != nil {
		return nil, err
	}
	spec.Pool = poolRes.Address
	if err := checkOneOf(where+": format", spec.Format, "qcow2", "raw"); err != nil {
		return nil, err
	}
	var baseRes *runtime.Resource
	switch {
	case source != starlark.None && (base != starlark.None || size != starlark.None):
		return nil, fmt.Errorf("%s: source cannot be combined with base or size: %w", where, errVolumeOrigin)
	case source != starlark.None:
		if spec.Source, err = sourcePath(thread, source); err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
	case base != starlark.None:
		if baseRes, err = runtime.UnpackRef(where, "base", base, volumeKinds...); err != nil {
			return nil, err
		}
		if spec.Format != "qcow2" {
			return nil, fmt.Errorf("%s: format %q: a copy-on-write overlay on base must be \"qcow2\"", where, spec.Format)
		}
		if err := checkSameHypervisor(where, "base", baseRes, spec.On); err != nil {
			return nil, err
		}
		spec.Base = baseRes.Address
	case size == starlark.None:
		return nil, fmt.Errorf("%s: %w", where, errVolumeOrigin)
	}
	if size != starlark.None {
		if spec.SizeMiB, err = unpackSize(where+": size", size); err != nil {
			return nil, err
		}
		if err := checkOverlaySize(baseRes, spec.SizeMiB); err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
	}
	if err := checkRedeclared(thread, b.Name(), spec.Kind(), name, spec.On); err != nil {
		return nil, err
	}
	r, err := runtime.Declare(thread, b.Name(), name, &spec, spec.Pool, spec.Base)
	if err != nil {
		return nil, err
	}
	if err := claim(thread, b.Name(), where, r, volumeNameKey(poolRes.Name, name, spec.On)); err != nil {
		return nil, err
	}
	return runtime.NewRef(r), nil
}

// sourcePath reads a volume's source: a local image file for the driver
// to upload, relative to the calling script, from the project root (//)
// or absolute.
func sourcePath(thread *starlark.Thread, v starlark.Value) (string, error) {
	s, ok := starlark.AsString(v)
	if !ok {
		return "", fmt.Errorf("source: got %s, want the path of a local image file", v.Type())
	}
	p, err := runtime.ProjectPath(thread, s)
	if err != nil {
		return "", fmt.Errorf("source: %w", err)
	}
	return p, nil
}

// checkOverlaySize refuses to shrink an overlay below its base's size,
// when the plan knows it (the base is a blank volume or itself grown).
func checkOverlaySize(base *runtime.Resource, size runtime.MiB) error {
	if base == nil {
		return nil
	}
	if v, ok := base.Spec.(*Volume); ok && v.SizeMiB > size {
		return fmt.Errorf("size %d MiB is smaller than its base %s (%d MiB): an overlay can grow, not shrink", size, base.Address, v.SizeMiB)
	}
	return nil
}

// volumeNameKey makes a volume's libvirt name unique within its pool (on
// its hypervisor), across libvirt.volume and libvirt.existing_volume.
func volumeNameKey(pool, name, on string) uniqueKey {
	return uniqueKey{namespace: onNamespace("libvirt.volume name in pool "+pool, on), key: name, what: fmt.Sprintf("volume name %s in pool %s", name, pool)}
}

// existingVolume implements libvirt.existing_volume.
func existingVolume(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var name string
	var poolArg starlark.Value
	var on starlark.Value = starlark.None
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "name", &name, "pool", &poolArg, "on?", &on); err != nil {
		return nil, err
	}
	if err := checkName(b.Name(), name); err != nil {
		return nil, err
	}
	where := fmt.Sprintf("%s %q", b.Name(), name)
	var spec ExistingVolume
	var err error
	if spec.On, err = unpackOn(where, on); err != nil {
		return nil, err
	}
	if s, ok := poolArg.(starlark.String); ok {
		if !runtime.ValidName(string(s)) {
			return nil, fmt.Errorf("%s: pool name %q: %s", where, string(s), runtime.NameRule)
		}
		spec.poolName = string(s)
	} else {
		poolRes, err := runtime.UnpackRef(where, "pool", poolArg, poolKinds...)
		if err != nil {
			return nil, fmt.Errorf("%w, or a pool name", err)
		}
		if err := checkSameHypervisor(where, "pool", poolRes, spec.On); err != nil {
			return nil, err
		}
		spec.Pool, spec.poolName = poolRes.Address, poolRes.Name
	}
	if err := checkRedeclared(thread, b.Name(), spec.Kind(), name, spec.On); err != nil {
		return nil, err
	}
	r, err := runtime.Declare(thread, b.Name(), name, &spec, spec.Pool)
	if err != nil {
		return nil, err
	}
	if err := claim(thread, b.Name(), where, r, volumeNameKey(spec.poolName, name, spec.On)); err != nil {
		return nil, err
	}
	bld, _ := runtime.BuilderOf(thread, b.Name())
	bld.OnFinish("libvirt", finish)
	return runtime.NewRef(r), nil
}
