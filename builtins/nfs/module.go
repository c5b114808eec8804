// Package nfs is the Starlark module nfs.
package nfs

import (
	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"
)

// Module is the nfs module.
var Module = &starlarkstruct.Module{Name: "nfs", Members: starlark.StringDict{}}
