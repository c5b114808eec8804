// Package builtins assembles studiorun's Starlark modules: qemu, libvirt,
// ssh, nfs and dhcp, one package each.
package builtins

import (
	"go.starlark.net/starlark"

	"github.com/studiorun/studiorun/builtins/dhcp"
	"github.com/studiorun/studiorun/builtins/libvirt"
	"github.com/studiorun/studiorun/builtins/nfs"
	"github.com/studiorun/studiorun/builtins/qemu"
	"github.com/studiorun/studiorun/builtins/ssh"
)

// Modules returns the modules predeclared in every script.
func Modules() starlark.StringDict {
	return starlark.StringDict{
		"dhcp":    dhcp.Module,
		"libvirt": libvirt.Module,
		"nfs":     nfs.Module,
		"qemu":    qemu.Module,
		"ssh":     ssh.Module,
	}
}
