package ssh_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/studiorun/studiorun/builtins/ssh"
	"github.com/studiorun/studiorun/builtins/ssh/sshtest"
	"github.com/studiorun/studiorun/runtime"
	"github.com/studiorun/studiorun/runtime/apply"
)

// These tests apply plans to a VM of the Debian base image (sshtest.BootVM):
// a real systemd for service tasks and handlers, and a real apt with a
// local repository for package tasks. One VM serves them all.

// probeUnit is a service that logs each of its starts, with the config it
// started with, to /var/lib/studiorun-probe/starts.
const probeUnit = `[Unit]
Description=studiorun notify probe

[Service]
ExecStartPre=/bin/sh -c 'mkdir -p /var/lib/studiorun-probe; echo start $$(cat /etc/studiorun-probe.conf 2>/dev/null) >> /var/lib/studiorun-probe/starts'
ExecStart=/bin/sleep infinity

[Install]
WantedBy=multi-user.target
`

// vmRole writes the probe service's unit and config (notifying it), and
// installs or removes the studiorun-probe package from a local repository.
const vmRole = `
h = ssh.host("vm", "127.0.0.1", port = PORT, key = KEY)
h.copy("/etc/systemd/system/studiorun-probe.service", content = UNIT, name = "unit")
probe = h.service("studiorun-probe", enabled = True, state = "started")
h.copy("/etc/studiorun-probe.conf", content = "version=%d\n", validate = VALIDATE, notify = probe)
h.copy("/etc/apt/sources.list.d/studiorun-probe.list", content = "deb [trusted=yes] file:/srv/studiorun-repo ./\n")
h.package(["studiorun-probe"], state = %q)
`

func TestServicesHandlersAndPackagesOnARealSystemdAndApt(t *testing.T) {
	deb := buildProbeDeb(t)
	vm := sshtest.BootVM(t)
	// A hermetic apt: the local repository only, no mirror.
	if _, err := vm.Exec("rm -f /etc/apt/sources.list && rm -rf /var/lib/apt/lists/*"); err != nil {
		t.Fatal(err)
	}
	if err := vm.WriteFile("/srv/studiorun-repo/studiorun-probe_1.0_all.deb", deb); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(deb)
	packages := fmt.Sprintf("Package: studiorun-probe\nVersion: 1.0\nArchitecture: all\nMaintainer: studiorun tests <tests@studiorun.invalid>\n"+
		"Filename: ./studiorun-probe_1.0_all.deb\nSize: %d\nSHA256: %s\nDescription: one file, for the apt tests\n\n", len(deb), hex.EncodeToString(sum[:]))
	if err := vm.WriteFile("/srv/studiorun-repo/Packages", []byte(packages)); err != nil {
		t.Fatal(err)
	}

	p := newProject(t, nil)
	kh := filepath.Join(t.TempDir(), "known_hosts")
	os.WriteFile(kh, []byte(vm.KnownHostsLine+"\n"), 0o600)
	opts := ssh.Options{KnownHosts: kh}
	validate := "None"
	script := func(version int, state string) *runtime.Plan {
		return p.eval(fmt.Sprintf("PORT = %d\nKEY = %q\nUNIT = %q\nVALIDATE = %s\n", vm.Port, vm.KeyPath, probeUnit, validate) + fmt.Sprintf(vmRole, version, state))
	}
	run := func(what string, plan *runtime.Plan, up bool) map[apply.Action]int {
		t.Helper()
		start := time.Now()
		changes, out, err := p.run(plan, opts, up)
		if err != nil {
			t.Fatalf("%s: %v\n%s", what, err, out)
		}
		t.Logf("%s: %s: %v", what, time.Since(start).Round(time.Millisecond), counts(changes))
		return counts(changes)
	}
	starts := func() string {
		out, err := vm.Exec("cat /var/lib/studiorun-probe/starts 2>/dev/null; true")
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	const handler = runtime.Address("ssh.handler.vm:studiorun-probe")

	v1 := script(1, "present")
	if v1.Resource(handler) == nil {
		t.Fatalf("no %s in the plan", handler)
	}
	// Check mode changes nothing, not even on a fresh host.
	if n := run("plan of a fresh VM", v1, false); n[apply.NoOp] == len(v1.Resources) {
		t.Errorf("plan of a fresh VM: nothing to change")
	}
	if got := starts(); got != "" {
		t.Errorf("check mode started the service: %q", got)
	}

	// The first up writes the unit, starts the service, writes its config,
	// installs the package; the handler restarts the service once.
	if n := run("first up", v1, true); n[apply.NoOp] == len(v1.Resources) {
		t.Errorf("first up: nothing changed")
	}
	if got := strings.Fields(mustVM(t, vm, "systemctl is-active studiorun-probe; systemctl is-enabled studiorun-probe")); strings.Join(got, " ") != "active enabled" {
		t.Errorf("after the first up the service is %q, want active enabled", got)
	}
	if got := starts(); got != "start\nstart version=1\n" {
		t.Errorf("starts after the first up: %q, want a start then one restart with the config", got)
	}
	if got := mustVM(t, vm, "dpkg-query -W -f='${db:Status-Status}' studiorun-probe; cat /usr/share/studiorun-probe/probe"); got != "installedprobe\n" {
		t.Errorf("package after the first up: %q", got)
	}

	// The second up changes nothing and restarts nothing.
	if n := run("second up", v1, true); n[apply.NoOp] != len(v1.Resources) {
		t.Errorf("second up: %v, want all %d no-op", n, len(v1.Resources))
	}
	if got := starts(); got != "start\nstart version=1\n" {
		t.Errorf("starts after the second up: %q, want no restart", got)
	}

	// A new config: check mode says the handler would restart, and does not.
	v2 := script(2, "present")
	changes, out, err := p.run(v2, opts, false)
	if err != nil {
		t.Fatalf("plan of version 2: %v\n%s", err, out)
	}
	if n := counts(changes); n[apply.Update] != 2 {
		t.Errorf("plan of version 2: %v, want the config and the handler updated", n)
	}
	var shown bytes.Buffer
	apply.NewOutput(&shown, false).Changes(changes)
	if !strings.Contains(shown.String(), "notified by ssh.copy.vm:/etc/studiorun-probe.conf") {
		t.Errorf("the plan does not say what notifies the handler:\n%s", shown.String())
	}
	if got := mustVM(t, vm, "cat /etc/studiorun-probe.conf"); got != "version=1\n" || starts() != "start\nstart version=1\n" {
		t.Errorf("check mode changed the host: config %q, starts %q", got, starts())
	}
	run("up of version 2", v2, true)
	if got := starts(); got != "start\nstart version=1\nstart version=2\n" {
		t.Errorf("starts after the config changed: %q, want one more restart", got)
	}
	if n := run("up of version 2 again", v2, true); n[apply.NoOp] != len(v2.Resources) {
		t.Errorf("up of version 2 again: %v, want all no-op", n)
	}

	// Removing the package: changed once, then ok.
	gone := script(2, "absent")
	if n := run("up removing the package", gone, true); n[apply.Update] != 1 {
		t.Errorf("removing the package: %v, want one update", n)
	}
	if got, _ := vm.Exec("dpkg-query -W -f='${db:Status-Status}' studiorun-probe 2>/dev/null; test -e /usr/share/studiorun-probe/probe && echo file left"); strings.Contains(got, "installed") || strings.Contains(got, "file left") {
		t.Errorf("after removing the package: %q", got)
	}
	if n := run("up removing it again", gone, true); n[apply.NoOp] != len(gone.Resources) {
		t.Errorf("removing it again: %v, want all no-op", n)
	}
	if got := starts(); got != "start\nstart version=1\nstart version=2\n" {
		t.Errorf("starts after the package runs: %q", got)
	}

	// A notifier that fails: its handler is skipped, nothing restarts.
	validate = `"grep -q never %s"`
	failing := script(3, "absent")
	_, out, err = p.run(failing, opts, true)
	t.Logf("up with a failing notifier:\n%s", out)
	if err == nil || !strings.Contains(err.Error(), "studiorun-probe.conf") {
		t.Errorf("up with a failing validate: error %v, want the config's\n%s", err, out)
	}
	if got := starts(); got != "start\nstart version=1\nstart version=2\n" {
		t.Errorf("starts after a notifier failed: %q, want no restart", got)
	}
}

// buildProbeDeb builds the studiorun-probe package with dpkg-deb: one
// file, /usr/share/studiorun-probe/probe.
func buildProbeDeb(t *testing.T) []byte {
	t.Helper()
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		if os.Getenv("STUDIORUN_REQUIRE_INTEGRATION") == "1" {
			t.Fatalf("STUDIORUN_REQUIRE_INTEGRATION=1 and dpkg-deb is not installed")
		}
		t.Skip("dpkg-deb is not installed")
	}
	dir := t.TempDir()
	root := filepath.Join(dir, "pkg")
	for name, data := range map[string]string{
		"DEBIAN/control": "Package: studiorun-probe\nVersion: 1.0\nArchitecture: all\n" +
			"Maintainer: studiorun tests <tests@studiorun.invalid>\nDescription: one file, for the apt tests\n",
		"usr/share/studiorun-probe/probe": "probe\n",
	} {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	deb := filepath.Join(dir, "studiorun-probe_1.0_all.deb")
	if out, err := exec.Command("dpkg-deb", "--root-owner-group", "--build", root, deb).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb: %v\n%s", err, out)
	}
	data, err := os.ReadFile(deb)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func mustVM(t *testing.T, vm *sshtest.VM, cmd string) string {
	t.Helper()
	out, err := vm.Exec(cmd)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
