package qemu

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.starlark.net/starlark"
	gossh "golang.org/x/crypto/ssh"

	"github.com/studiorun/studiorun/builtins/ssh"
	"github.com/studiorun/studiorun/runtime"
	"github.com/studiorun/studiorun/runtime/apply"
)

// TestSOEFromDebianBaseProvisionedBySSHDriver is `soe.star up --var
// source=disk` without the CLI: scripts/soe.star evaluated in a copy of
// the project whose base image is the Debian base image, built by this
// driver with the ssh driver as its Provisioner (the ops_user role's
// tasks run on the build VM). The image then boots and the ops user logs
// in with its key and has sudo.
func TestSOEFromDebianBaseProvisionedBySSHDriver(t *testing.T) {
	needPrograms(t, "qemu-system-x86_64", "qemu-img", "debootstrap")
	images := buildTestImage(t, "debian-base.sh")
	root := t.TempDir()
	for _, dir := range []string{".git", "scripts/keys", "build"} {
		os.MkdirAll(filepath.Join(root, dir), 0o755)
	}
	soe, err := os.ReadFile(filepath.Join("..", "..", "scripts", "soe.star"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(root, "scripts", "soe.star"), soe, 0o644)
	_, opsPriv, _ := ed25519.GenerateKey(rand.Reader)
	ops, _ := gossh.NewSignerFromKey(opsPriv)
	os.WriteFile(filepath.Join(root, "scripts", "keys", "ops.pub"), gossh.MarshalAuthorizedKey(ops.PublicKey()), 0o644)
	for _, f := range []string{"debian-12-base.qcow2", "debian-12-base.qcow2.key"} {
		if err := os.Symlink(filepath.Join(images, f), filepath.Join(root, "build", f)); err != nil {
			t.Fatal(err)
		}
	}
	plan, err := runtime.Eval(runtime.Options{
		Script:  filepath.Join(root, "scripts", "soe.star"),
		Vars:    []string{"source=disk", "base_image=build/debian-12-base.qcow2"},
		Modules: starlark.StringDict{"qemu": Module, "ssh": ssh.Module},
	})
	if err != nil {
		t.Fatal(err)
	}
	r := plan.Resource("qemu.image.vfx-studio-soe")
	// The build VM's host key is new at every build: the SSH driver pins
	// it without looking it up or recording it (no --accept-new-host-keys).
	sshd := ssh.NewDriver(ssh.Options{KnownHosts: filepath.Join(t.TempDir(), "known_hosts")})
	defer sshd.Close()
	sshd.SetPlan(plan)
	d := NewDriver(plan.Root, Options{Provisioner: sshd})
	d.SetPlan(plan)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	c, err := d.Diff(ctx, r, nil)
	if err != nil || c.Action != apply.Create {
		t.Fatalf("Diff: %+v, %v", c, err)
	}
	start := time.Now()
	entry, err := d.Apply(ctx, r, c, newTestReporter(t))
	if err != nil {
		serial, _ := os.ReadFile(filepath.Join(root, "build", "vfx-studio-soe_0.1.0.qcow2.serial.log"))
		t.Fatalf("Apply: %v\nserial log:\n%s", err, tail(serial, 3000))
	}
	t.Logf("soe.star source=disk built and provisioned in %s", time.Since(start).Round(100*time.Millisecond))
	start = time.Now()
	if c, err := d.Diff(ctx, r, entry); err != nil || c.Action != apply.NoOp {
		t.Errorf("second Diff: %+v, %v", c, err)
	}
	t.Logf("second Diff (no-op): %s", time.Since(start))

	client, _ := bootClone(t, ctx, filepath.Join(root, "build", "vfx-studio-soe_0.1.0.qcow2"), "ops", ops)
	out, err := runSSH(client, "id -un; id -Gn; sudo -n id -u; cat /etc/machine-id")
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 || lines[0] != "ops" || !strings.Contains(" "+lines[1]+" ", " sudo ") || lines[2] != "0" || len(lines[3]) != 32 {
		t.Errorf("on the clone, as ops: %q; want ops, in group sudo, sudo to uid 0, a machine-id", lines)
	}
}
