package libvirt

import (
	"errors"
	"fmt"
	"strings"

	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"

	"github.com/studiorun/studiorun/runtime"
)

// Module is the libvirt module:
//
//	libvirt.hypervisor(uri, name=None) -> libvirt.hypervisor (a value for on=)
//	libvirt.pool(name, path, type="dir", on=None) -> libvirt.pool
//	libvirt.existing_pool(name, on=None) -> libvirt.existing_pool
//	libvirt.volume(name, pool, source=None, base=None, size=None, format="qcow2", on=None) -> libvirt.volume
//	libvirt.existing_volume(name, pool, on=None) -> libvirt.existing_volume
//	libvirt.network(name, subnet, gateway=None, dhcp_range=None, mode="nat",
//	                domain=None, bridge=None, autostart=True, on=None) -> libvirt.network
//	libvirt.existing_network(name, on=None) -> libvirt.existing_network
//	libvirt.nic(network=None, bridge=None, mac=None, model="virtio") -> libvirt.nic
//	libvirt.disk(volume, bus="virtio") -> libvirt.disk
//	libvirt.domain(name, vcpu=1, memory=1024, disks=[], nics=[], max_vcpu=None,
//	               max_memory=None, autostart=False, running=True, serial_console=True,
//	               shutdown_timeout="2m", replace_on_change=[], kernel=None, initrd=None,
//	               cmdline=None, on=None) -> libvirt.domain
//
// on = a libvirt.hypervisor places a resource on that host; without it the
// resource is on the CLI's --libvirt-uri.
var Module = &starlarkstruct.Module{
	Name: "libvirt",
	Members: starlark.StringDict{
		"pool":             starlark.NewBuiltin("libvirt.pool", pool),
		"existing_pool":    starlark.NewBuiltin("libvirt.existing_pool", existingPool),
		"volume":           starlark.NewBuiltin("libvirt.volume", volume),
		"existing_volume":  starlark.NewBuiltin("libvirt.existing_volume", existingVolume),
		"network":          starlark.NewBuiltin("libvirt.network", network),
		"existing_network": starlark.NewBuiltin("libvirt.existing_network", existingNetwork),
		"nic":              starlark.NewBuiltin("libvirt.nic", nic),
		"disk":             starlark.NewBuiltin("libvirt.disk", disk),
		"domain":           starlark.NewBuiltin("libvirt.domain", domain),
		"hypervisor":       starlark.NewBuiltin("libvirt.hypervisor", hypervisor),
	},
}

// checkName refuses a name that cannot be a libvirt object's name.
func checkName(fn, name string) error {
	if !runtime.ValidName(name) {
		return fmt.Errorf("%s: name %q: %s", fn, name, runtime.NameRule)
	}
	return nil
}

// checkOneOf refuses got unless it is one of allowed; what names the
// argument and its owner ("libvirt.disk: bus").
func checkOneOf(what, got string, allowed ...string) error {
	for _, a := range allowed {
		if got == a {
			return nil
		}
	}
	return fmt.Errorf("%s %q: want %s", what, got, quoteList(allowed))
}

// quoteList writes `"a", "b" or "c"`.
func quoteList(items []string) string {
	quoted := make([]string, len(items))
	for i, s := range items {
		quoted[i] = fmt.Sprintf("%q", s)
	}
	if len(quoted) == 1 {
		return quoted[0]
	}
	return strings.Join(quoted[:len(quoted)-1], ", ") + " or " + quoted[len(quoted)-1]
}

// unpackSize reads a size argument (1024, "1GiB") as runtime.MiB; what
// names the argument and its owner in the error.
func unpackSize(what string, v starlark.Value) (runtime.MiB, error) {
	var m runtime.MiB
	if err := m.Unpack(v); err != nil {
		switch v.(type) {
		case starlark.Int, starlark.String:
			return 0, fmt.Errorf("%s %w", what, err)
		}
		return 0, fmt.Errorf("%s: %w", what, err)
	}
	return m, nil
}

// uniqueKey is a key that one resource at most may hold (a MAC address, a
// pool's path), with the words that describe it in an error.
type uniqueKey struct {
	namespace, key string
	what           string // "MAC 02:00:00:00:00:01"
	hint           string // what to do instead, or ""
}

// claim reserves unique keys for r, declared by fn, and names the holder
// of the first key that another resource holds. where is r's description.
func claim(thread *starlark.Thread, fn, where string, r *runtime.Resource, keys ...uniqueKey) error {
	bld, err := runtime.BuilderOf(thread, fn)
	if err != nil {
		return err
	}
	for _, k := range keys {
		if holder, ok := bld.Claim(k.namespace, k.key, r); !ok {
			msg := fmt.Sprintf("%s: %s is already used by %s at %s", where, k.what, holder.Address, holder.Pos)
			if k.hint != "" {
				msg += ": " + k.hint
			}
			return errors.New(msg)
		}
	}
	return nil
}
