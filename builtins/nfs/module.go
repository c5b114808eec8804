// Package nfs is the Starlark module for NFS exports and mounts, each one
// task on an ssh.host:
//
//	nfs.export(host, path, clients, options="rw,sync,no_subtree_check", mode=None, owner=None, group=None) -> nfs.export
//	nfs.mount(host, server, export, path, options="defaults") -> nfs.mount
//
// An export brings, when applied, the NFS server package of the host's OS,
// the directory, one /etc/exports line for it, `exportfs -ra` when that line
// changed, and the NFS service enabled and started; mode, owner and group,
// when given, are the directory's (as host.file's): the clients' root is
// squashed to the anonymous user, so a share that clients write needs
// them. A mount brings the
// client package, the mount point, exactly one /etc/fstab entry for it, and
// the filesystem mounted. server is an ssh.host or a host name; when it is
// a host that exports the directory (anywhere in the script), the mount
// waits for that export. Addresses are nfs.export.<host>:<path> and
// nfs.mount.<host>:<path>.
package nfs

import (
	"fmt"
	"net/netip"
	"regexp"
	"strings"

	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"

	"github.com/studiorun/studiorun/builtins/ssh"
	"github.com/studiorun/studiorun/runtime"
)

// Module is the nfs module.
var Module = &starlarkstruct.Module{
	Name: "nfs",
	Members: starlark.StringDict{
		"export": starlark.NewBuiltin("nfs.export", export),
		"mount":  starlark.NewBuiltin("nfs.mount", mount),
	},
}

// Export is the spec of nfs.export: a directory of the host exported to
// clients. Ownership is the directory's.
type Export struct {
	ssh.HostTask
	Path    string   `json:"path"`
	Clients []string `json:"clients"`
	Options string   `json:"options"`
	ssh.Ownership
}

// Kind implements runtime.Spec.
func (*Export) Kind() string { return "nfs.export" }

// Mount is the spec of nfs.mount: an NFS export mounted on the host.
// Server is the address written in fstab; ServerHost the ssh.host it
// belongs to, when the script declares it.
type Mount struct {
	ssh.HostTask
	Server     string          `json:"server"`
	ServerHost runtime.Address `json:"server_host,omitempty"`
	Export     string          `json:"export"`
	Path       string          `json:"path"`
	Options    string          `json:"options"`
}

// Kind implements runtime.Spec.
func (*Mount) Kind() string { return "nfs.mount" }

// state is what an evaluation's nfs declarations need for the checks made
// once the whole script has run.
type state struct {
	exports map[runtime.Address][]*runtime.Resource // by server host
	mounts  []declaredMount
}

type declaredMount struct {
	call ssh.TaskCall
	res  *runtime.Resource
	spec *Mount
}

func stateOf(thread *starlark.Thread, fn string) (*state, error) {
	b, err := runtime.BuilderOf(thread, fn)
	if err != nil {
		return nil, err
	}
	b.OnFinish("nfs.mount", checkMounts)
	return b.Local("nfs", func() any { return &state{exports: map[runtime.Address][]*runtime.Resource{}} }).(*state), nil
}

// export implements nfs.export.
func export(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var hostV, clients starlark.Value
	var own ssh.OwnershipArgs
	spec := Export{Options: "rw,sync,no_subtree_check"}
	params := append([]any{"host", &hostV, "path", &spec.Path, "clients", &clients, "options?", &spec.Options}, own.Params()...)
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, params...); err != nil {
		return nil, err
	}
	h, err := ssh.UnpackHost(b.Name(), "host", hostV)
	if err != nil {
		return nil, err
	}
	c := ssh.TaskCall{Fn: b.Name(), Host: h, Identity: spec.Path}
	if err := checkExport(&spec, clients); err != nil {
		return nil, c.Errorf("%v", err)
	}
	if spec.Ownership, err = c.Ownership(&own); err != nil {
		return nil, c.Errorf("%v", err)
	}
	st, err := stateOf(thread, b.Name())
	if err != nil {
		return nil, err
	}
	v, err := c.Declare(thread, &spec)
	if err != nil {
		return nil, err
	}
	st.exports[spec.TaskHost()] = append(st.exports[spec.TaskHost()], v.(runtime.Referent).Resource())
	return v, nil
}

func checkExport(spec *Export, clients starlark.Value) error {
	if err := ssh.CheckPath(spec.Path); err != nil {
		return err
	}
	if s, ok := clients.(starlark.String); ok {
		clients = starlark.NewList([]starlark.Value{s})
	}
	list, ok := clients.(*starlark.List)
	if !ok || list.Len() == 0 {
		return fmt.Errorf("clients: got %s, want a CIDR, address or host name, or a non-empty list of them", clients.Type())
	}
	for i := 0; i < list.Len(); i++ {
		c, ok := list.Index(i).(starlark.String)
		if !ok {
			return fmt.Errorf("clients[%d]: got %s, want a string", i, list.Index(i).Type())
		}
		if err := checkClient(string(c)); err != nil {
			return err
		}
		spec.Clients = append(spec.Clients, string(c))
	}
	return checkExportOptions(spec.Options)
}

var (
	wildcardHostRE = regexp.MustCompile(`^(?i)[a-z0-9*?]([a-z0-9*?-]*)(\.[a-z0-9*?]([a-z0-9*?-]*))*$`)
	exportOptionRE = regexp.MustCompile(`^[a-z_]+(=[A-Za-z0-9_:./@-]+)?$`)
)

// checkClient checks one client of an export as /etc/exports names it: a
// CIDR, an address, a host name (with * and ? wildcards) or @netgroup.
func checkClient(c string) error {
	if strings.Contains(c, "(") {
		return fmt.Errorf("client %q: give the export's options in options=, not after the client", c)
	}
	if strings.Contains(c, "/") {
		p, err := netip.ParsePrefix(c)
		if err != nil {
			return fmt.Errorf("client %q is not a CIDR such as \"172.16.0.0/24\"", c)
		}
		if p.Masked() != p {
			return fmt.Errorf("client %q has host bits set: did you mean %q?", c, p.Masked().String())
		}
		return nil
	}
	if _, err := netip.ParseAddr(c); err == nil || c == "*" || strings.HasPrefix(c, "@") && len(c) > 1 {
		return nil
	}
	if !wildcardHostRE.MatchString(c) {
		return fmt.Errorf("client %q: want a CIDR, an address, a host name or @netgroup", c)
	}
	return nil
}

// exportOpposites are the export options that exclude each other.
var exportOpposites = [][2]string{{"rw", "ro"}, {"sync", "async"}, {"root_squash", "no_root_squash"}}

// checkExportOptions checks the options of an /etc/exports entry.
func checkExportOptions(options string) error {
	set := map[string]bool{}
	for _, o := range strings.Split(options, ",") {
		if !exportOptionRE.MatchString(o) {
			return fmt.Errorf("options %q: %q is not an export option; want comma-separated options without blanks, such as \"rw,sync,no_subtree_check\"", options, o)
		}
		set[o] = true
	}
	for _, pair := range exportOpposites {
		if set[pair[0]] && set[pair[1]] {
			return fmt.Errorf("options %q: %s and %s exclude each other", options, pair[0], pair[1])
		}
	}
	return nil
}

// mount implements nfs.mount.
func mount(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var hostV, server starlark.Value
	spec := Mount{Options: "defaults"}
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "host", &hostV, "server", &server, "export", &spec.Export,
		"path", &spec.Path, "options?", &spec.Options); err != nil {
		return nil, err
	}
	h, err := ssh.UnpackHost(b.Name(), "host", hostV)
	if err != nil {
		return nil, err
	}
	c := ssh.TaskCall{Fn: b.Name(), Host: h, Identity: spec.Path}
	if err := checkMount(&spec, server); err != nil {
		return nil, c.Errorf("%v", err)
	}
	st, err := stateOf(thread, b.Name())
	if err != nil {
		return nil, err
	}
	v, err := c.Declare(thread, &spec)
	if err != nil {
		return nil, err
	}
	st.mounts = append(st.mounts, declaredMount{c, v.(runtime.Referent).Resource(), &spec})
	return v, nil
}

func checkMount(spec *Mount, server starlark.Value) error {
	if err := ssh.CheckPath(spec.Path); err != nil {
		return err
	}
	switch s := server.(type) {
	case *ssh.Host:
		spec.Server, spec.ServerHost = s.Spec().Address, s.Resource().Address
		if spec.Server == "" {
			return fmt.Errorf("server %s has no address to mount from", s.Resource().Name)
		}
	case starlark.String:
		if host, _, ok := strings.Cut(string(s), ":"); ok && strings.Contains(string(s), "/") {
			return fmt.Errorf("server %q holds the export too: pass server=%q and export= separately", string(s), host)
		}
		if err := ssh.CheckAddress(string(s)); err != nil {
			return fmt.Errorf("server: %w", err)
		}
		spec.Server = string(s)
	default:
		return fmt.Errorf("server: got %s, want an ssh.host or a host name", server.Type())
	}
	if err := ssh.CheckPath(spec.Export); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	return ssh.CheckMountOptions(spec.Options)
}

// checkMounts runs once the script is evaluated: a mount from a declared
// host waits for the export that serves it, and must be one of its clients.
// A server host that declares no export is managed elsewhere.
func checkMounts(b *runtime.Builder) error {
	st := b.Local("nfs", func() any { return &state{} }).(*state)
	for _, m := range st.mounts {
		exports := st.exports[m.spec.ServerHost]
		if len(exports) == 0 {
			continue
		}
		var served *runtime.Resource
		var paths []string
		for _, r := range exports {
			p := r.Spec.(*Export).Path
			paths = append(paths, p)
			if (m.spec.Export == p || strings.HasPrefix(m.spec.Export, p+"/")) && (served == nil || len(p) > len(served.Spec.(*Export).Path)) {
				served = r
			}
		}
		if served == nil {
			return &runtime.Error{Pos: m.res.Pos, Msg: m.call.Errorf("%s exports %s, not %s", m.spec.ServerHost.Name(), strings.Join(paths, ", "), m.spec.Export).Error()}
		}
		if err := checkAllowed(served.Spec.(*Export), m.call.Host.Spec().Address); err != nil {
			return &runtime.Error{Pos: m.res.Pos, Msg: m.call.Errorf("%v", err).Error()}
		}
		b.AddDependency(m.res, served.Address)
	}
	return nil
}

// checkAllowed checks that a client at addr may mount export, when the
// export names its clients by address only (host names resolve later).
func checkAllowed(e *Export, addr string) error {
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		return nil
	}
	for _, c := range e.Clients {
		p, err := netip.ParsePrefix(c)
		if err != nil {
			a, err := netip.ParseAddr(c)
			if err != nil {
				return nil // a name or wildcard: unknown until applied
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		if p.Contains(ip) {
			return nil
		}
	}
	return fmt.Errorf("its address %s is not among the clients of %s:%s (%s)", addr, e.TaskHost().Name(), e.Path, strings.Join(e.Clients, ", "))
}
