// Package ssh is the Starlark module ssh.
package ssh

import (
	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"
)

// Module is the ssh module.
var Module = &starlarkstruct.Module{Name: "ssh", Members: starlark.StringDict{}}
