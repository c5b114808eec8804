// Package ssh is the Starlark module for hosts configured over SSH:
//
//	ssh.host(name, address, port=22, user="root", key=None, password=None,
//	         become=False, become_password=None) -> ssh.host
//	ssh.inventory(groups={"servers": [host, ...]}, name="default") -> ssh.inventory
//
// key is a private key file (default: ssh-agent); password and
// become_password are secret() values. A host has the attributes name,
// address, kind and facts (admin_group, os_family, package_manager: known
// when the plan is applied; host.facts.admin_group is wheel on EL and sudo
// on Debian), and methods that declare tasks, run in the order of the
// script:
//
//	host.user(name, shell=None, groups=[], home=None, system=False, state="present")
//	host.group(name, system=False, state="present")
//	host.authorized_key(user, key, exclusive=False, name=None)
//	host.file(path, state="file", mode=None, owner=None, group=None, name=None)
//	host.copy(dest, content=None, src=None, mode=None, owner=None, group=None,
//	          validate=None, backup=False, name=None)
//	host.template(dest, src, values={}, mode=None, owner=None, group=None,
//	              validate=None, backup=False, name=None)
//	host.line_in_file(path, line=None, regexp=None, state="present",
//	                  insert_after=None, insert_before=None, create=False, name=None)
//	host.package(names, state="present", name=None)
//	host.service(name, enabled=None, state=None, on_notify="restart")
//	host.mount(path, source=None, fstype=None, options="defaults", state="mounted", name=None)
//	host.command(cmd, creates=None, unless=None, name=None)
//	host.shell(script, creates=None, unless=None, name=None)
//	host.upload(src, dest, mode=None, owner=None, group=None, name=None)
//
// A task's address is ssh.<task>.<host>:<identity>, the identity being its
// natural key (user name, path, package names, command) or name=; for
// example ssh.copy.vfx-dev-001:/etc/sudoers.d/ops. Each task depends on its
// host and on the task declared before it on the same host.
//
// Every task also takes notify=: a service task of the same host (the value
// host.service returns) or a list of them. When a task that notifies a
// service changes during a run, the service is restarted (reloaded with
// on_notify="reload") once, after the host's other tasks: the plan holds
// it as ssh.handler.<host>:<service>.
package ssh

import (
	"fmt"

	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"

	"github.com/studiorun/studiorun/runtime"
)

// Module is the ssh module.
var Module = &starlarkstruct.Module{
	Name: "ssh",
	Members: starlark.StringDict{
		"host":      starlark.NewBuiltin("ssh.host", hostBuiltin),
		"inventory": starlark.NewBuiltin("ssh.inventory", inventory),
	},
}

// taskMethods are the methods of a host value, each declaring a task.
var taskMethods = map[string]taskMethod{
	"user":           userTask,
	"group":          groupTask,
	"authorized_key": authorizedKeyTask,
	"file":           fileTask,
	"copy":           copyTask,
	"template":       templateTask,
	"line_in_file":   lineInFileTask,
	"package":        packageTask,
	"service":        serviceTask,
	"mount":          mountTask,
	"command":        commandTask,
	"shell":          shellTask,
	"upload":         uploadTask,
}

// Inventory is the spec of ssh.inventory: named groups of hosts, which a
// run can be limited to.
type Inventory struct {
	Groups map[string][]runtime.Address `json:"groups"`
}

// Kind implements runtime.Spec.
func (*Inventory) Kind() string { return "ssh.inventory" }

// inventory implements ssh.inventory.
func inventory(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var groups *starlark.Dict
	name := "default"
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "groups", &groups, "name?", &name); err != nil {
		return nil, err
	}
	where := fmt.Sprintf("%s %q", b.Name(), name)
	if !runtime.ValidName(name) {
		return nil, fmt.Errorf("%s: name: %s", where, runtime.NameRule)
	}
	spec := Inventory{Groups: map[string][]runtime.Address{}}
	var deps []runtime.Address
	for _, item := range groups.Items() {
		group, ok := item[0].(starlark.String)
		if !ok {
			return nil, fmt.Errorf("%s: group name %s: got %s, want a string", where, item[0], item[0].Type())
		}
		if !runtime.ValidName(string(group)) {
			return nil, fmt.Errorf("%s: group name %q: %s", where, string(group), runtime.NameRule)
		}
		members, ok := item[1].(starlark.Indexable)
		if !ok || item[1].Type() == "string" {
			return nil, fmt.Errorf("%s: group %q: got %s, want a list of ssh.host values", where, string(group), item[1].Type())
		}
		addrs := []runtime.Address{}
		seen := map[runtime.Address]bool{}
		for i := 0; i < members.Len(); i++ {
			h, err := UnpackHost(where, fmt.Sprintf("group %q[%d]", string(group), i), members.Index(i))
			if err != nil {
				return nil, err
			}
			a := h.res.Address
			if seen[a] {
				return nil, fmt.Errorf("%s: group %q lists %s twice", where, string(group), h.res.Name)
			}
			seen[a] = true
			addrs = append(addrs, a)
			deps = append(deps, a)
		}
		spec.Groups[string(group)] = addrs
	}
	r, err := runtime.Declare(thread, b.Name(), name, &spec, deps...)
	if err != nil {
		return nil, err
	}
	return runtime.NewRef(r), nil
}
