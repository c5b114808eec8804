// Package builtins assembles studiorun's Starlark modules: qemu, libvirt,
// ssh, nfs and dhcp, one package each.
package builtins

import (
	"errors"
	"fmt"
	"strings"

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

// pendingDrivers names, per module, the issue that brings its driver.
var pendingDrivers = map[string]string{
	"nfs":  "issue #4, the SSH task engine",
	"ssh":  "issue #4, the SSH task engine",
	"qemu": "issue #5, the image builder",
}

// CheckDrivers fails when a module of the plan has no driver in this build.
func CheckDrivers(modules []string) error {
	var missing []string
	for _, m := range modules {
		if issue, ok := pendingDrivers[m]; ok {
			missing = append(missing, fmt.Sprintf("the %s driver is not built yet (%s)", m, issue))
		}
	}
	if len(missing) > 0 {
		return errors.New(strings.Join(missing, "; "))
	}
	return nil
}
