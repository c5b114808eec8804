package nfs

import (
	"fmt"
	"strings"

	"github.com/studiorun/studiorun/builtins/ssh"
)

// The nfs kinds are applied by the ssh driver: nfs.export and nfs.mount
// are composite tasks (ssh.Composite) whose steps are ssh tasks, checked
// in the same round trip as the host's other tasks and changed in one.
// (The ssh driver cannot import this package, which imports ssh: the
// composites carry their own steps instead.) Route nfs.export and
// nfs.mount to the ssh driver.

var (
	_ ssh.Composite = (*Export)(nil)
	_ ssh.Composite = (*Mount)(nil)
)

// serverPackage and clientPackage are the NFS packages per OS family.
var (
	serverPackage = map[string]string{"debian": "nfs-kernel-server", "el": "nfs-utils"}
	serverService = map[string]string{"debian": "nfs-kernel-server", "el": "nfs-server"}
	clientPackage = map[string]string{"debian": "nfs-common", "el": "nfs-utils"}
)

func family(f *ssh.HostFacts, table map[string]string, what string) (string, error) {
	if v := table[f.OSFamily]; v != "" {
		return v, nil
	}
	return "", fmt.Errorf("no NFS %s known for the host's OS (%q, like %q): studiorun knows Debian and EL families", what, f.OSID, f.OSLike)
}

// ExportsLine is the /etc/exports line of an export.
func (e *Export) ExportsLine() string {
	parts := []string{e.Path}
	for _, c := range e.Clients {
		parts = append(parts, c+"("+e.Options+")")
	}
	return strings.Join(parts, " ")
}

// Steps implements ssh.Composite: the server package, the directory (with
// the export's ownership), one
// /etc/exports line for the path (the first line for it replaced, others
// removed), the
// NFS service enabled and started, and exportfs -ra when the line changed.
func (e *Export) Steps(f *ssh.HostFacts) ([]ssh.Step, error) {
	pkg, err := family(f, serverPackage, "server package")
	if err != nil {
		return nil, err
	}
	svc, _ := family(f, serverService, "server service")
	on := true
	return []ssh.Step{
		{Label: "package", Task: &ssh.Package{Names: []string{pkg}, State: "present"}},
		{Label: "directory", Task: &ssh.File{Path: e.Path, State: "directory", Ownership: e.Ownership}},
		{Label: "exports", Task: &ssh.KeyedLine{Path: "/etc/exports", Field: 0, Key: e.Path, Line: e.ExportsLine()}},
		{Label: "service", Task: &ssh.Service{Name: svc, Enabled: &on, State: "started"}},
		{Label: "exportfs", Task: &ssh.Command{Argv: []string{"exportfs", "-ra"}}, OnlyIfChanged: []int{2}},
	}, nil
}

// Steps implements ssh.Composite: the client package, the mount point,
// exactly one /etc/fstab entry for it, mounted.
func (m *Mount) Steps(f *ssh.HostFacts) ([]ssh.Step, error) {
	pkg, err := family(f, clientPackage, "client package")
	if err != nil {
		return nil, err
	}
	server := m.Server
	if m.ServerHost != "" {
		server = fmt.Sprintf("%s (%s)", m.ServerHost.Name(), m.Server)
	}
	return []ssh.Step{
		{Label: "package", Task: &ssh.Package{Names: []string{pkg}, State: "present"}},
		{Label: "mountpoint", Task: &ssh.File{Path: m.Path, State: "directory"}},
		{Label: "mount", Task: &ssh.Mount{Path: m.Path, Source: m.Server + ":" + m.Export, Fstype: "nfs", Options: m.Options, State: "mounted"},
			Fail: fmt.Sprintf("%s cannot mount %s:%s from the NFS server %s: is the server up, exporting it to this host, and reachable from it?", m.TaskHost().Name(), m.Server, m.Export, server)},
	}, nil
}
