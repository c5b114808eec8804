package main

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
	gossh "golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/studiorun/studiorun/builtins/ssh/sshtest"
)

// The libvirt objects scripts/studio.star makes with dev_host_count 1.
var (
	studioNetwork = "studio"
	studioPool    = "studio"
	studioDomains = []string{"vfx-nfs-001", "vfx-dev-001"}
	studioVolumes = []string{"vfx-studio-soe_0.1.0.qcow2", "vfx-nfs-001.qcow2", "vfx-dev-001.qcow2"}
	studioPoolDir = "/var/lib/libvirt/images/studio"
	studioURI     = "qemu:///system"
)

// TestStudioEndToEnd runs the article's workflow through the CLI with the
// project's own scripts, as a user would, on qemu:///system: soe.star
// builds the SOE image from the Debian base image, studio.star runs the
// fleet (vfx-nfs-001 and vfx-dev-001), servers.star configures it over
// SSH as ops, logging in through ssh-agent. A file written to /vfx on the
// dev host is then read from the export on the NFS server: the real NFS
// round trip between two VMs. A plan after it and a second up change
// nothing; down leaves nothing behind. Where KVM does not work (nested
// guests) the domains run under software emulation.
func TestStudioEndToEnd(t *testing.T) {
	requireLibvirtd(t)
	for _, p := range []string{"qemu-system-x86_64", "qemu-img"} {
		if _, err := exec.LookPath(p); err != nil {
			sshtest.NeedIntegration(t, p+" is not installed")
		}
	}
	images := sshtest.BuildImage(t, "debian-base.sh")
	l := dialLibvirt(t, studioURI)
	refuseStudioObjects(t, l)
	subnet := freeSubnet(t, l)
	_, err := os.Stat(studioPoolDir)
	ownPoolDir := os.IsNotExist(err)

	// The project: the scripts and roles, a .git folder (the project root),
	// the ops key pair's public half in scripts/keys/ops.pub.
	dir := t.TempDir()
	copyProject(t, dir, "scripts/soe.star", "scripts/studio.star", "scripts/studio_hosts.star", "scripts/servers.star",
		"stdlib/roles/ops_user.star", "stdlib/roles/nfs_server.star", "stdlib/roles/nfs_client.star")
	for _, d := range []string{".git", "build"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"debian-12-base.qcow2", "debian-12-base.qcow2.key"} {
		if err := os.Symlink(filepath.Join(images, f), filepath.Join(dir, "build", f)); err != nil {
			t.Fatal(err)
		}
	}
	ops := opsKey(t, dir)

	run := func(phase string, args ...string) (int, string) {
		t.Helper()
		start := time.Now()
		code, out, errOut := studiorun(t, dir, args...)
		t.Logf("%s: exit %d in %s", phase, code, time.Since(start).Round(100*time.Millisecond))
		return code, out + errOut
	}
	must := func(phase string, args ...string) string {
		t.Helper()
		code, out := run(phase, args...)
		if code != 0 {
			t.Fatalf("studiorun %s: exit %d\n%s", strings.Join(args, " "), code, out)
		}
		return out
	}

	must("soe.star up (the SOE image)", "scripts/soe.star", "up", "--yes", "--var", "source=disk", "--var", "base_image=build/debian-12-base.qcow2")
	for _, f := range []string{"vfx-studio-soe_0.1.0.qcow2", "vfx-studio-soe_0.1.0.qcow2.json"} {
		if _, err := os.Stat(filepath.Join(dir, "build", f)); err != nil {
			t.Fatalf("soe.star up: %v", err)
		}
	}

	studio := func(verb string) []string {
		return []string{"scripts/studio.star", verb, "--yes", "--var", "subnet=" + subnet, "--libvirt-uri", studioURI}
	}
	t.Cleanup(func() {
		_, out := run("studio.star down", studio("down")...)
		t.Logf("studio.star down:\n%s", out)
		for _, d := range studioDomains {
			if domainExists(l, d) {
				t.Errorf("after down, domain %s still exists", d)
			}
		}
		for _, v := range studioVolumes {
			if volumeExists(l, studioPool, v) {
				t.Errorf("after down, volume %s still exists", v)
			}
		}
		if poolExists(l, studioPool) || networkExists(l, studioNetwork) {
			t.Errorf("after down, the pool or the network %q still exists", studioPool)
		}
		// down leaves the pool's directory, empty; the test made it.
		if ownPoolDir {
			if err := os.Remove(studioPoolDir); err != nil && !os.IsNotExist(err) {
				t.Errorf("after down, the pool's directory: %v", err)
			}
		}
	})
	must("studio.star up (the fleet, subnet "+subnet+")", studio("up")...)

	knownHosts := filepath.Join(t.TempDir(), "known_hosts")
	servers := func(verb string, args ...string) []string {
		return append([]string{"scripts/servers.star", verb, "--var", "subnet=" + subnet, "--known-hosts", knownHosts, "--connect-timeout", "4m"}, args...)
	}
	out := must("servers.star up (the guests booting under TCG)", servers("up", "--yes", "--accept-new-host-keys")...)
	t.Logf("servers.star up:\n%s", out)

	// The round trip: a file written on the dev host's mount is on the
	// server's export.
	start := time.Now()
	dev := opsClient(t, knownHosts, hostIP(t, subnet, 11), ops)
	nfs := opsClient(t, knownHosts, hostIP(t, subnet, 10), ops)
	token := make([]byte, 16)
	rand.Read(token)
	name := "e2e-" + hex.EncodeToString(token[:4])
	if out, err := opsExec(dev, fmt.Sprintf("echo %x | sudo -n tee /vfx/%s >/dev/null", token, name)); err != nil {
		diag, _ := opsExec(dev, "ls -ld /vfx; findmnt /vfx; sudo -n cat /proc/fs/nfsfs/volumes")
		srv, _ := opsExec(nfs, "ls -ld /srv/nfs/vfx; sudo -n exportfs -v; cat /etc/exports")
		t.Fatalf("vfx-dev-001: writing to /vfx as root (sudo): %v\n%s\non vfx-dev-001:\n%s\non vfx-nfs-001:\n%s", err, out, diag, srv)
	}
	if got := opsRun(t, nfs, "vfx-nfs-001", "sudo -n cat /srv/nfs/vfx/"+name); strings.TrimSpace(got) != hex.EncodeToString(token) {
		t.Errorf("vfx-nfs-001:/srv/nfs/vfx/%s = %q, want the token %x written to /vfx on vfx-dev-001", name, got, token)
	}
	mnt := strings.Fields(opsRun(t, dev, "vfx-dev-001", "findmnt -no FSTYPE,SOURCE /vfx"))
	if len(mnt) != 2 || (mnt[0] != "nfs" && mnt[0] != "nfs4") || mnt[1] != hostIP(t, subnet, 10)+":/srv/nfs/vfx" {
		t.Errorf("findmnt /vfx on vfx-dev-001: %q, want nfs or nfs4 from %s:/srv/nfs/vfx", mnt, hostIP(t, subnet, 10))
	}
	if lines := opsRun(t, dev, "vfx-dev-001", "grep -cE '^[^#]*[[:space:]]/vfx[[:space:]]' /etc/fstab"); strings.TrimSpace(lines) != "1" {
		t.Errorf("/etc/fstab on vfx-dev-001 has %s /vfx line(s), want 1", strings.TrimSpace(lines))
	}
	t.Logf("the NFS round trip, checked over SSH: %s", time.Since(start).Round(100*time.Millisecond))

	if code, out := run("servers.star plan (converged)", servers("plan", "--detailed-exitcode")...); code != 0 {
		t.Errorf("servers.star plan after up: exit %d, want 0 (nothing to change)\n%s", code, out)
	}
	// A converged up applies nothing: it says so, with no task lines and
	// no recap (applyChanges stops at an empty plan); a recap, if one is
	// printed, must show no change on either host.
	out = must("servers.star up again (no changes)", servers("up", "--yes")...)
	if !strings.Contains(out, "No changes: the real objects match the plan.") || strings.Contains(out, "changed: [") {
		t.Errorf("the second servers.star up changed something:\n%s", out)
	}
	for _, h := range studioDomains {
		if strings.Contains(out, "Recap:") && !regexp.MustCompile(`(?m)^\s+`+h+`\s+ok=\d+ changed=0 failed=0 `).MatchString(out) {
			t.Errorf("the second servers.star up's recap shows changes on %s:\n%s", h, out)
		}
	}
}

// refuseStudioObjects fails t when libvirt already has an object of the
// names studio.star uses: someone else's, which the test must not touch.
func refuseStudioObjects(t *testing.T, l *golibvirt.Libvirt) {
	t.Helper()
	var found []string
	if networkExists(l, studioNetwork) {
		found = append(found, "network "+studioNetwork)
	}
	if poolExists(l, studioPool) {
		found = append(found, "pool "+studioPool)
	}
	for _, d := range studioDomains {
		if domainExists(l, d) {
			found = append(found, "domain "+d)
		}
	}
	if len(found) > 0 {
		t.Fatalf("qemu:///system already has %s, which this test did not create: remove them (studiorun scripts/studio.star down, or virsh) and run it again", strings.Join(found, ", "))
	}
}

// copyProject copies the repository's files (paths from its root) into
// dir, under the same paths.
func copyProject(t *testing.T, dir string, files ...string) {
	t.Helper()
	root := projectRoot(t)
	for _, f := range files {
		data, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(f)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// opsKey makes the ops key pair: the public key goes to
// dir/scripts/keys/ops.pub, the private key into an ssh-agent of the
// test's own, which SSH_AUTH_SOCK names for the CLI runs.
func opsKey(t *testing.T, dir string) gossh.Signer {
	t.Helper()
	priv, signer := sshtest.NewKey(t)
	if err := os.MkdirAll(filepath.Join(dir, "scripts", "keys"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "scripts", "keys", "ops.pub"), gossh.MarshalAuthorizedKey(signer.PublicKey()), 0o644); err != nil {
		t.Fatal(err)
	}
	keyring := agent.NewKeyring()
	if err := keyring.Add(agent.AddedKey{PrivateKey: priv, Comment: "ops@studiorun-e2e"}); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "agent.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatalf("ssh-agent socket: %v", err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				agent.ServeAgent(keyring, c)
			}()
		}
	}()
	t.Setenv("SSH_AUTH_SOCK", sock)
	return signer
}

// hostIP is host number n of subnet, as studio_hosts.star numbers them
// (10: the NFS server, 11: the first dev host).
func hostIP(t *testing.T, subnet string, n int) string {
	t.Helper()
	_, ipnet, err := net.ParseCIDR(subnet)
	if err != nil {
		t.Fatal(err)
	}
	ip := ipnet.IP.To4()
	return net.IPv4(ip[0], ip[1], ip[2], ip[3]+byte(n)).String()
}

// opsClient logs in to ip as ops with key, checking the host key that
// servers.star recorded in knownHosts.
func opsClient(t *testing.T, knownHosts, ip string, key gossh.Signer) *gossh.Client {
	t.Helper()
	check, err := knownhosts.New(knownHosts)
	if err != nil {
		t.Fatalf("known hosts: %v", err)
	}
	c, err := gossh.Dial("tcp", net.JoinHostPort(ip, "22"), &gossh.ClientConfig{
		User: "ops", Auth: []gossh.AuthMethod{gossh.PublicKeys(key)}, HostKeyCallback: check, Timeout: 30 * time.Second,
	})
	if err != nil {
		t.Fatalf("SSH to %s as ops: %v", ip, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// opsExec runs cmd through c and returns its output.
func opsExec(c *gossh.Client, cmd string) (string, error) {
	s, err := c.NewSession()
	if err != nil {
		return "", fmt.Errorf("session: %w", err)
	}
	defer s.Close()
	out, err := s.CombinedOutput(cmd)
	if err != nil {
		return string(out), fmt.Errorf("%s: %w", cmd, err)
	}
	return string(out), nil
}

// opsRun runs cmd on the host and returns its output; a failure fails t.
func opsRun(t *testing.T, c *gossh.Client, host, cmd string) string {
	t.Helper()
	out, err := opsExec(c, cmd)
	if err != nil {
		t.Fatalf("%s: %v\n%s", host, err, out)
	}
	return out
}
