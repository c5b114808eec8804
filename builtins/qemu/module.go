// Package qemu is the Starlark module qemu.
package qemu

import (
	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"
)

// Module is the qemu module.
var Module = &starlarkstruct.Module{Name: "qemu", Members: starlark.StringDict{}}
