// Package libvirt is the Starlark module libvirt.
package libvirt

import (
	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"
)

// Module is the libvirt module.
var Module = &starlarkstruct.Module{Name: "libvirt", Members: starlark.StringDict{}}
