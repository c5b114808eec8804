package libvirt

import (
	"fmt"
	"path"

	"go.starlark.net/starlark"

	"github.com/studiorun/studiorun/runtime"
)

// Pool is the spec of libvirt.pool: a storage pool that the script owns.
type Pool struct {
	Type string `json:"type"`
	Path string `json:"path"`         // on the hypervisor
	On   string `json:"on,omitempty"` // the hypervisor's URI; "" for --libvirt-uri
}

// Kind implements runtime.Spec.
func (*Pool) Kind() string { return "libvirt.pool" }

// ExistingPool is the spec of libvirt.existing_pool: a storage pool that
// the script uses but does not own; the driver only reads it.
type ExistingPool struct {
	On string `json:"on,omitempty"`
}

// Kind implements runtime.Spec.
func (*ExistingPool) Kind() string { return "libvirt.existing_pool" }

// poolKinds are the kinds a volume's pool argument may refer to.
var poolKinds = []string{"libvirt.pool", "libvirt.existing_pool"}

// pool implements libvirt.pool.
func pool(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var name string
	var on starlark.Value = starlark.None
	spec := Pool{Type: "dir"}
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "name", &name, "path", &spec.Path, "type?", &spec.Type, "on?", &on); err != nil {
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
	if err := checkOneOf(where+": type", spec.Type, "dir"); err != nil {
		return nil, err
	}
	if err := checkHostPath(spec.Path); err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	if err := checkRedeclared(thread, b.Name(), spec.Kind(), name, spec.On); err != nil {
		return nil, err
	}
	r, err := runtime.Declare(thread, b.Name(), name, &spec)
	if err != nil {
		return nil, err
	}
	if err := claim(thread, b.Name(), where, r, poolNameKey(name, spec.On), uniqueKey{
		namespace: onNamespace("libvirt.pool path", spec.On), key: spec.Path, what: "path " + spec.Path,
		hint: "two pools cannot share a directory",
	}); err != nil {
		return nil, err
	}
	return runtime.NewRef(r), nil
}

// checkHostPath refuses a pool path that is not an absolute, clean path on
// the hypervisor.
func checkHostPath(p string) error {
	if !path.IsAbs(p) || path.Clean(p) != p || p == "/" {
		return fmt.Errorf("path %q: want an absolute path on the hypervisor such as \"/var/lib/libvirt/images/studio\"", p)
	}
	return nil
}

// existingPool implements libvirt.existing_pool.
func existingPool(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var spec ExistingPool
	return declareExisting(thread, b, args, kwargs, &spec, &spec.On, poolNameKey)
}

// declareExisting declares an object that the script reads and does not
// own, from name and on=: spec's hypervisor is stored in *on, and key
// makes its name unique on that hypervisor.
func declareExisting(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple,
	spec runtime.Spec, on *string, key func(name, on string) uniqueKey) (starlark.Value, error) {
	var name string
	var onArg starlark.Value = starlark.None
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "name", &name, "on?", &onArg); err != nil {
		return nil, err
	}
	if err := checkName(b.Name(), name); err != nil {
		return nil, err
	}
	where := fmt.Sprintf("%s %q", b.Name(), name)
	var err error
	if *on, err = unpackOn(where, onArg); err != nil {
		return nil, err
	}
	if err := checkRedeclared(thread, b.Name(), spec.Kind(), name, *on); err != nil {
		return nil, err
	}
	r, err := runtime.Declare(thread, b.Name(), name, spec)
	if err != nil {
		return nil, err
	}
	if err := claim(thread, b.Name(), where, r, key(name, *on)); err != nil {
		return nil, err
	}
	return runtime.NewRef(r), nil
}

// poolNameKey makes a pool's libvirt name unique on its hypervisor across
// libvirt.pool and libvirt.existing_pool: one pool cannot be both owned
// and not owned.
func poolNameKey(name, on string) uniqueKey {
	return uniqueKey{namespace: onNamespace("libvirt.pool name", on), key: name, what: "pool name " + name}
}
