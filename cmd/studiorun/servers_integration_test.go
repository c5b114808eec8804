package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/studiorun/studiorun/builtins/ssh/sshtest"
)

// TestServersUpOnTestHosts applies the ops_user role and a few tasks to two
// real sshd test hosts through the CLI, as servers.star does: the first
// up changes, the plan after it is empty, an unknown host key is refused
// without --accept-new-host-keys, and the role's effects are on the hosts.
func TestServersUpOnTestHosts(t *testing.T) {
	hosts := sshtest.Hosts(t, 2)
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, ".studiorun"), 0o755); err != nil {
		t.Fatal(err)
	}
	var decl strings.Builder
	for _, h := range hosts {
		fmt.Fprintf(&decl, "hosts.append(ssh.host(%q, %q, user = \"root\", key = %q))\n", h.Name, h.Address, h.KeyPath)
	}
	script := `load("//stdlib/roles/ops_user.star", "ops_user")
hosts = []
` + decl.String() + `
for h in hosts:
    ops_user(h, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDceuKYO90CaUjynbIhVdKDMR/U+cayXH66DcZDcCsmO ops@test")
    h.file("/vfx", state = "directory", mode = 0o755)
    h.line_in_file("/etc/motd", line = "managed by studiorun", create = True)
ssh.inventory(groups = {"servers": hosts})
`
	if err := os.WriteFile(filepath.Join(dir, "servers.star"), []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	knownHosts := filepath.Join(dir, "known_hosts")
	run := func(args ...string) (int, string) {
		code, out, errOut := studiorun(t, dir, append(append([]string{"servers.star"}, args...), "--known-hosts", knownHosts, "--connect-timeout", "3s")...)
		return code, out + errOut
	}
	if code, out := run("plan"); code == 0 || !strings.Contains(out, "known_hosts") {
		t.Fatalf("plan with unknown host keys: exit %d, want a refusal naming known_hosts\n%s", code, out)
	}
	code, out := run("up", "--yes", "--accept-new-host-keys")
	if code != 0 {
		t.Fatalf("up: exit %d\n%s", code, out)
	}
	t.Logf("up:\n%s", out)
	if code, out := run("plan", "--detailed-exitcode"); code != 0 {
		t.Fatalf("plan after up: exit %d, want 0 (nothing to change)\n%s", code, out)
	}
	// An up with nothing to change still recaps the hosts, as Ansible does.
	code, out = run("up", "--yes")
	for _, h := range hosts {
		for _, want := range []string{"ok: [" + h.Name + "] ssh.user ops\n", "  " + h.Name + "  ok=6 changed=0 failed=0 skipped=0 unreachable=0\n"} {
			if code != 0 || !strings.Contains(out, want) {
				t.Errorf("up with nothing to change: exit %d, want %q\n%s", code, want, out)
			}
		}
	}
	// --limit: a change on both hosts, applied to the first only.
	if _, err := hosts[1].Exec("rm /etc/motd"); err != nil {
		t.Fatal(err)
	}
	if _, err := hosts[0].Exec("echo welcome > /etc/motd"); err != nil {
		t.Fatal(err)
	}
	// A content change is summarised; --diff shows it.
	code, out = run("plan", "--limit", hosts[0].Name)
	if code != 0 || !strings.Contains(out, "1 line(s) added, 0 removed") || strings.Contains(out, "+managed by studiorun") {
		t.Errorf("plan without --diff: exit %d, want the change summarised without its diff\n%s", code, out)
	}
	code, out = run("plan", "--limit", hosts[0].Name, "--diff")
	if code != 0 || !strings.Contains(out, "+++ /etc/motd") || !strings.Contains(out, " welcome\n          +managed by studiorun") {
		t.Errorf("plan --diff: exit %d, want the unified diff of /etc/motd\n%s", code, out)
	}
	code, out = run("up", "--yes", "--limit", hosts[0].Name)
	if code != 0 || strings.Contains(out, hosts[1].Name) {
		t.Fatalf("up --limit %s: exit %d, or it touched %s\n%s", hosts[0].Name, code, hosts[1].Name, out)
	}
	// A line per task, as Ansible prints them, in the script's order.
	ok := "ok: [" + hosts[0].Name + "] ssh.user ops\n"
	changed := "changed: [" + hosts[0].Name + "] ssh.line_in_file /etc/motd ("
	if i, j := strings.Index(out, ok), strings.Index(out, changed); i < 0 || j < i {
		t.Errorf("up --limit: want %q then %q\n%s", ok, changed, out)
	}
	if code, out := run("plan", "--limit", "nosuchgroup"); code != 2 || !strings.Contains(out, "groups: servers") {
		t.Errorf("--limit of an unknown name: exit %d\n%s", code, out)
	}
	if got, _ := hosts[1].Exec("cat /etc/motd 2>/dev/null || echo absent"); !strings.Contains(got, "absent") {
		t.Errorf("%s was changed despite --limit: /etc/motd = %q", hosts[1].Name, got)
	}
	if code, out := run("up", "--yes", "--limit", "servers"); code != 0 {
		t.Fatalf("up --limit servers: exit %d\n%s", code, out)
	}
	for _, h := range hosts {
		for cmd, want := range map[string]string{
			"getent passwd ops":             ":/bin/bash",
			"stat -c %a /etc/sudoers.d/ops": "440",
			"stat -c %a /vfx":               "755",
			"cat /etc/motd":                 "managed by studiorun",
		} {
			got, err := h.Exec(cmd)
			if err != nil || !strings.Contains(got, want) {
				t.Errorf("%s: %s = %q (%v), want %q", h.Name, cmd, got, err, want)
			}
		}
	}
	// A host that is down fails alone: the other is configured, the recap
	// names both, the exit code is 1.
	for _, h := range hosts {
		if _, err := h.Exec("rm /etc/motd"); err != nil {
			t.Fatal(err)
		}
	}
	if err := hosts[1].Stop(); err != nil {
		t.Fatal(err)
	}
	code, out = run("up", "--yes")
	if code != 1 {
		t.Fatalf("up with a host down: exit %d, want 1\n%s", code, out)
	}
	for _, want := range []string{
		"Recap:",
		hosts[0].Name + "  ok=5 changed=1 failed=0 skipped=0 unreachable=0",
		hosts[1].Name + "  ok=0 changed=0 failed=0 skipped=5 unreachable=1",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("up with a host down lacks %q:\n%s", want, out)
		}
	}
	if got, _ := hosts[0].Exec("cat /etc/motd"); !strings.Contains(got, "managed by studiorun") {
		t.Errorf("the host that is up was not configured: /etc/motd = %q", got)
	}
}
