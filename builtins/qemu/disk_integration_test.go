package qemu

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/studiorun/studiorun/builtins/ssh/sshtest"
	"github.com/studiorun/studiorun/runtime"
	"github.com/studiorun/studiorun/runtime/apply"
)

// keyProvisioner stands in for the SSH task engine: it logs in to the
// build VM with the builder's key, authorizes a second key for root and
// writes a marker.
type keyProvisioner struct {
	builderKey ssh.Signer
	secondKey  ssh.PublicKey
	calls      []string
	hostKey    ssh.PublicKey // the build VM's
	// breakShutdown replaces shutdown with a command that fails, so that
	// the builder falls back to the ACPI power button.
	breakShutdown bool
}

func (p *keyProvisioner) Provision(ctx context.Context, host runtime.Address, addr string, port int, rep apply.Reporter) error {
	p.calls = append(p.calls, fmt.Sprintf("%s %s:%d", host, addr, port))
	client, err := dialSSH(ctx, net.JoinHostPort(addr, strconv.Itoa(port)), &ssh.ClientConfig{
		User: "root", Auth: []ssh.AuthMethod{ssh.PublicKeys(p.builderKey)},
		HostKeyCallback: func(_ string, _ net.Addr, k ssh.PublicKey) error { p.hostKey = k; return nil },
		Timeout:         10 * time.Second,
	})
	if err != nil {
		return err
	}
	defer client.Close()
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(p.secondKey)))
	script := fmt.Sprintf("echo %s >> /root/.ssh/authorized_keys && cat /etc/machine-id > /root/provisioned", shellQuote(line))
	if p.breakShutdown {
		script += " && rm /usr/sbin/shutdown && printf '#!/bin/sh\\nexit 1\\n' > /usr/sbin/shutdown && chmod 755 /usr/sbin/shutdown"
	}
	out, err := runSSH(client, script)
	if err != nil {
		return fmt.Errorf("%v: %s", err, out)
	}
	return nil
}

// TestDiskBuildFromDebianBase builds an image from the Debian base image
// (testdata/images/debian-base.sh) with accelerator "auto" (KVM when it
// works, else TCG with a notice): the build VM boots, SSH answers with
// the base image's key, the provisioner runs, the image is sealed, shut
// down, converted, and its manifest written; a second Diff is a no-op in
// well under a second. The output then boots: the provisioner's work is
// there, the builder's key is gone, and it has a new machine-id and new
// SSH host keys.
func TestDiskBuildFromDebianBase(t *testing.T) {
	needPrograms(t, "qemu-system-x86_64", "qemu-img", "debootstrap")
	dir := sshtest.BuildImage(t, "debian-base.sh")
	base := filepath.Join(dir, "debian-12-base.qcow2")
	keyData, err := os.ReadFile(base + ".key")
	if err != nil {
		t.Fatal(err)
	}
	builderKey, err := ssh.ParsePrivateKey(keyData)
	if err != nil {
		t.Fatal(err)
	}
	_, second := sshtest.NewKey(t)

	root := t.TempDir()
	spec := &Image{
		Version: "0.1.0", Source: "disk", BaseImage: base, OutputDir: "build",
		OutputFile: "soe-test_0.1.0.qcow2", Format: "qcow2", DiskSize: 2048, Memory: 1024, CPUs: 2,
		Accelerator: "auto", SSHUsername: "root", SSHKey: base + ".key",
		SSHTimeout: runtime.Duration(3 * time.Minute), ShutdownCommand: "shutdown -P now",
		ShutdownTimeout: runtime.Duration(time.Minute), Provision: "test_role",
		ProvisionHost: "ssh.host.soe-test-build",
	}
	r := &runtime.Resource{Address: "qemu.image.soe-test", Name: "soe-test", Spec: spec}
	host := &runtime.Resource{Address: "ssh.host.soe-test-build", Name: "soe-test-build", Spec: &fakeSpec{Kind_: "ssh.host"}}
	task := &runtime.Resource{Address: "ssh.command.soe-test-build:mark", Name: "soe-test-build:mark",
		Spec: &fakeSpec{Kind_: "ssh.command", Shell: "mark"}, DependsOn: []runtime.Address{host.Address}}
	prov := &keyProvisioner{builderKey: builderKey, secondKey: second.PublicKey()}
	d := NewDriver(root, Options{Provisioner: prov})
	d.SetPlan(&runtime.Plan{Resources: []*runtime.Resource{r, host, task}})

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	c, err := d.Diff(ctx, r, nil)
	if err != nil || c.Action != apply.Create {
		t.Fatalf("first Diff: %+v, %v", c, err)
	}
	start := time.Now()
	entry, err := d.Apply(ctx, r, c, newTestReporter(t))
	if err != nil {
		serial, _ := os.ReadFile(filepath.Join(root, "build", spec.OutputFile+".serial.log"))
		t.Fatalf("Apply: %v\nserial log:\n%s", err, tail(serial, 3000))
	}
	t.Logf("disk build (boot, SSH, provision, seal, shutdown, convert, manifest): %s", time.Since(start).Round(100*time.Millisecond))
	noQemuLeft(t, root)
	if entry.ID != filepath.Join("build", spec.OutputFile) || len(prov.calls) != 1 || !strings.HasPrefix(prov.calls[0], "ssh.host.soe-test-build 127.0.0.1:") {
		t.Errorf("entry %+v, provisioner calls %v", entry, prov.calls)
	}
	image := filepath.Join(root, "build", spec.OutputFile)
	m, err := readManifest(manifestPath(image))
	if err != nil || m == nil {
		t.Fatalf("manifest: %v %v", m, err)
	}
	sum, _ := sha256File(image)
	fi, _ := os.Stat(image)
	if m.SHA256 != sum || m.Size != fi.Size() || !strings.HasPrefix(m.QemuVersion, "QEMU emulator version") || m.InputsHash == "" || m.Inputs.Parts["provision"] == "" {
		t.Errorf("manifest %+v, image sha256 %s size %d", m, sum, fi.Size())
	}
	if left, _ := os.ReadDir(filepath.Join(root, "build")); len(left) != 2 {
		t.Errorf("output_dir holds %v, want the image and its manifest", left)
	}

	start = time.Now()
	c, err = d.Diff(ctx, r, entry)
	if el := time.Since(start); err != nil || c.Action != apply.NoOp {
		t.Fatalf("second Diff: %+v, %v; want a no-op", c, err)
	} else {
		t.Logf("second Diff (no-op): %s", el)
	}

	checkClone(t, ctx, image, builderKey, second, prov.hostKey)

	// Force rebuilds unchanged inputs; a shutdown_command that fails falls
	// back to the ACPI power button.
	d.opts.Force = true
	prov.breakShutdown = true
	c, err = d.Diff(ctx, r, entry)
	if err != nil || c.Action != apply.Replace || c.Attrs[0].Note != "rebuild forced" {
		t.Fatalf("Diff with Force: %+v, %v", c, err)
	}
	rep := &noteRecorder{testReporter: newTestReporter(t)}
	start = time.Now()
	if _, err := d.Apply(ctx, r, c, rep); err != nil {
		serial, _ := os.ReadFile(filepath.Join(root, "build", spec.OutputFile+".serial.log"))
		t.Fatalf("forced Apply: %v\nserial log:\n%s", err, tail(serial, 3000))
	}
	t.Logf("forced rebuild, powered off by ACPI: %s", time.Since(start).Round(100*time.Millisecond))
	if !strings.Contains(rep.notes.String(), "powered off (ACPI power button)") {
		t.Errorf("the forced build did not power off through ACPI:\n%s", rep.notes.String())
	}
	if m2, _ := readManifest(manifestPath(image)); m2 == nil || m2.InputsHash != m.InputsHash || !m2.BuiltAt.After(m.BuiltAt.Add(-time.Second)) {
		t.Errorf("manifest after the forced build: %+v", m2)
	}
}

// noteRecorder keeps the notes it logs.
type noteRecorder struct {
	*testReporter
	notes strings.Builder
}

func (r *noteRecorder) Notef(addr runtime.Address, format string, args ...any) {
	r.testReporter.mu.Lock()
	fmt.Fprintf(&r.notes, format+"\n", args...)
	r.testReporter.mu.Unlock()
	r.testReporter.Notef(addr, format, args...)
}

// checkClone boots an overlay of the built image and checks what the
// build left in it.
func checkClone(t *testing.T, ctx context.Context, image string, builderKey, second ssh.Signer, buildHostKey ssh.PublicKey) {
	t.Helper()
	client, hostKey := bootClone(t, ctx, image, "root", second)
	out, err := runSSH(client, "cat /root/provisioned; cat /etc/machine-id; cat /root/.ssh/authorized_keys")
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) < 3 || lines[0] == "" || lines[1] == "" || lines[0] == lines[1] {
		t.Errorf("the build's machine-id then the clone's: %q: want both set and different", lines)
	}
	if builder := authorizedKeyBlob(string(ssh.MarshalAuthorizedKey(builderKey.PublicKey()))); strings.Contains(out, builder) {
		t.Errorf("the builder's key is still authorized in the image:\n%s", out)
	}
	addr := client.RemoteAddr().String()
	if _, err := dialSSH(ctx, addr, &ssh.ClientConfig{User: "root", Auth: []ssh.AuthMethod{ssh.PublicKeys(builderKey)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 10 * time.Second}); err == nil {
		t.Errorf("the builder's key still logs in to the clone")
	}
	// The seal removed the build VM's host keys: the clone made its own.
	if hostKey == nil || buildHostKey == nil || bytes.Equal(hostKey.Marshal(), buildHostKey.Marshal()) {
		t.Errorf("the clone's host key is the build VM's (or missing): %v", hostKey)
	}
}

// bootClone boots a copy-on-write clone of image under TCG and logs in as
// user with key; the VM is stopped when the test ends.
func bootClone(t *testing.T, ctx context.Context, image, user string, key ssh.Signer) (*ssh.Client, ssh.PublicKey) {
	t.Helper()
	dir := t.TempDir()
	tools := newExecTools("", "")
	clone := filepath.Join(dir, "clone.qcow2")
	if _, err := tools.Img(ctx, nil, createArgs(clone, 0, image, "qcow2")...); err != nil {
		t.Fatal(err)
	}
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	var stderr lockedBuffer
	proc, err := tools.Start(qemuArgs(launchConfig{
		Name: "clone", Accel: "tcg", Memory: 1024, CPUs: 2, Disk: clone,
		SerialLog: filepath.Join(dir, "serial.log"), QMPSocket: filepath.Join(dir, "q.sock"),
		Net: defaultUserNet, SSHPort: port,
	}), &stderr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(proc.Kill)
	return waitSSH(t, ctx, net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), user, key, func() string {
		serial, _ := os.ReadFile(filepath.Join(dir, "serial.log"))
		return string(tail(serial, 3000))
	})
}

// waitSSH logs in to addr as user with key, trying every second for up
// to 3 minutes, and returns the client (closed when the test ends) and
// the host key the server showed; console, on failure, says what the
// guest printed.
func waitSSH(t *testing.T, ctx context.Context, addr, user string, key ssh.Signer, console func() string) (*ssh.Client, ssh.PublicKey) {
	t.Helper()
	var hostKey ssh.PublicKey
	cfg := &ssh.ClientConfig{User: user, Auth: []ssh.AuthMethod{ssh.PublicKeys(key)}, Timeout: 10 * time.Second,
		HostKeyCallback: func(_ string, _ net.Addr, k ssh.PublicKey) error { hostKey = k; return nil }}
	start := time.Now()
	for deadline := time.Now().Add(3 * time.Minute); ; {
		client, err := dialSSH(ctx, addr, cfg)
		if err == nil {
			t.Cleanup(func() { client.Close() })
			t.Logf("%s reached SSH in %s", addr, time.Since(start).Round(100*time.Millisecond))
			return client, hostKey
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			t.Fatalf("SSH to %s as %s: %v\n%s", addr, user, err, console())
		}
		time.Sleep(time.Second)
	}
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
