package nfs

import (
	"encoding/base64"
	"strings"
	"testing"

	"github.com/studiorun/studiorun/builtins/ssh"
	"github.com/studiorun/studiorun/runtime"
	"github.com/studiorun/studiorun/runtime/apply"
)

var (
	debian = &ssh.HostFacts{OSID: "debian", OSFamily: "debian", PackageManager: "apt", Init: "systemd", AdminGroup: "sudo"}
	rocky  = &ssh.HostFacts{OSID: "rocky", OSLike: "rhel centos fedora", OSFamily: "el", PackageManager: "dnf", Init: "systemd", AdminGroup: "wheel"}
	alpine = &ssh.HostFacts{OSID: "alpine"}
)

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func newExport() *Export {
	e := &Export{Path: "/srv/nfs/vfx", Clients: []string{"172.16.0.0/24", "10.0.0.5"}, Options: "rw,sync,no_subtree_check"}
	e.Host = "ssh.host.vfx-nfs-001"
	return e
}

func labels(steps []ssh.Step) string {
	var l []string
	for _, s := range steps {
		l = append(l, s.Label+"="+s.Task.Kind())
	}
	return strings.Join(l, " ")
}

func TestExportStepsPerOSFamily(t *testing.T) {
	for _, tc := range []struct {
		facts        *ssh.HostFacts
		pkg, service string
	}{{debian, "nfs-kernel-server", "nfs-kernel-server"}, {rocky, "nfs-utils", "nfs-server"}} {
		steps, err := newExport().Steps(tc.facts)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := labels(steps), "package=ssh.package directory=ssh.file exports=ssh.keyed_line service=ssh.service exportfs=ssh.command"; got != want {
			t.Errorf("steps %s, want %s", got, want)
		}
		if got := steps[0].Task.(*ssh.Package).Names[0]; got != tc.pkg {
			t.Errorf("%s: package %s, want %s", tc.facts.OSID, got, tc.pkg)
		}
		if got := steps[3].Task.(*ssh.Service).Name; got != tc.service {
			t.Errorf("%s: service %s, want %s", tc.facts.OSID, got, tc.service)
		}
	}
	if _, err := newExport().Steps(alpine); err == nil || !strings.Contains(err.Error(), "no NFS server package known") {
		t.Errorf("alpine: %v", err)
	}
	if got := newExport().ExportsLine(); got != "/srv/nfs/vfx 172.16.0.0/24(rw,sync,no_subtree_check) 10.0.0.5(rw,sync,no_subtree_check)" {
		t.Errorf("exports line %q", got)
	}
}

// exportProbes is the state of a server, step by step.
func exportProbes(exports string, active string) []ssh.Probe {
	return []ssh.Probe{
		{"pkg": "nfs-utils installed"},
		{"type": "directory", "mode": "755", "owner": "root", "group": "root"},
		{"type": "regular file", "mode": "644", "owner": "root", "group": "root", "content": b64(exports)},
		{"load": "loaded", "enabled": "enabled", "active": active},
		{},
	}
}

func TestExportRunsExportfsOnlyWhenItsLineChanges(t *testing.T) {
	e := newExport()
	steps, _ := e.Steps(rocky)
	line := e.ExportsLine() + "\n"

	decs, err := ssh.DecideSteps(steps, rocky, exportProbes("/home 10.0.0.0/8(ro)\n"+line, "active"))
	if err != nil {
		t.Fatal(err)
	}
	for i, d := range decs {
		if d.Action != apply.NoOp {
			t.Errorf("converged server: step %s would %s: %+v", steps[i].Label, d.Action, d.Attrs)
		}
	}

	// Two lines for the directory (an old one and a hand-written one):
	// one is left, and exportfs runs.
	old := "/srv/nfs/vfx 172.16.0.0/24(ro)\n/home 10.0.0.0/8(ro)\n/srv/nfs/vfx *(rw)\n"
	decs, err = ssh.DecideSteps(steps, rocky, exportProbes(old, "active"))
	if err != nil {
		t.Fatal(err)
	}
	if decs[2].Action != apply.Update || string(decs[2].Stdin) != e.ExportsLine()+"\n/home 10.0.0.0/8(ro)\n" {
		t.Errorf("exports: %s %q", decs[2].Action, decs[2].Stdin)
	}
	if decs[4].Action == apply.NoOp || !strings.Contains(decs[4].Script.String(), "exportfs -ra") {
		t.Errorf("exportfs does not run after the line changed: %+v", decs[4])
	}

	// The service stopped, the line right: start it, no exportfs.
	decs, _ = ssh.DecideSteps(steps, rocky, exportProbes(line, "inactive"))
	if decs[3].Action != apply.Update || decs[4].Action != apply.NoOp {
		t.Errorf("service %s, exportfs %s", decs[3].Action, decs[4].Action)
	}
}

func TestMountStepsAndTheirFailureNameBothHosts(t *testing.T) {
	m := &Mount{Server: "172.16.0.10", ServerHost: "ssh.host.vfx-nfs-001", Export: "/srv/nfs/vfx", Path: "/vfx", Options: "defaults"}
	m.Host = "ssh.host.vfx-dev-001"
	steps, err := m.Steps(debian)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := labels(steps), "package=ssh.package mountpoint=ssh.file mount=ssh.mount"; got != want {
		t.Errorf("steps %s, want %s", got, want)
	}
	if got := steps[0].Task.(*ssh.Package).Names[0]; got != "nfs-common" {
		t.Errorf("client package %s", got)
	}
	mt := steps[2].Task.(*ssh.Mount)
	if mt.Source != "172.16.0.10:/srv/nfs/vfx" || mt.Fstype != "nfs" || mt.State != "mounted" {
		t.Errorf("mount %+v", mt)
	}
	if !strings.Contains(steps[2].Fail, "vfx-dev-001") || !strings.Contains(steps[2].Fail, "vfx-nfs-001") {
		t.Errorf("failure message names one host: %s", steps[2].Fail)
	}
	// The article's two /vfx lines become one.
	fstab := "/dev/sda1 / xfs defaults 0 0\n172.16.0.10:/srv/nfs/vfx /vfx nfs rw 0 0\nvfx-nfs-001:/srv/nfs/vfx /vfx nfs defaults 0 0\n"
	decs, err := ssh.DecideSteps(steps, debian, []ssh.Probe{
		{"pkg": "nfs-common installed"}, {"type": "directory", "mode": "755", "owner": "root", "group": "root"},
		{"content": b64(fstab), "mounted": "172.16.0.10:/srv/nfs/vfx nfs"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := string(decs[2].Stdin); got != "/dev/sda1 / xfs defaults 0 0\n172.16.0.10:/srv/nfs/vfx /vfx nfs defaults 0 0\n" {
		t.Errorf("fstab %q", got)
	}
}

// The export's mode is its directory's: a share that clients write (their
// root squashed to nobody) gets it, and a directory that lacks it is
// changed.
func TestExportDirectoryMode(t *testing.T) {
	e := newExport()
	mode := runtime.Mode(0o777)
	e.Mode = &mode
	steps, err := e.Steps(rocky)
	if err != nil {
		t.Fatal(err)
	}
	if got := steps[1].Task.(*ssh.File).Mode; got == nil || *got != mode {
		t.Fatalf("directory step mode %v, want 0777", got)
	}
	decs, err := ssh.DecideSteps(steps, rocky, exportProbes(e.ExportsLine()+"\n", "active"))
	if err != nil {
		t.Fatal(err)
	}
	if decs[1].Action != apply.Update || !strings.Contains(decs[1].Script.String(), "777") {
		t.Errorf("a 755 directory is not made 0777: %s %s", decs[1].Action, decs[1].Script.String())
	}
	for _, i := range []int{2, 3, 4} {
		if decs[i].Action != apply.NoOp {
			t.Errorf("step %s: %s, want no change", steps[i].Label, decs[i].Action)
		}
	}
}
