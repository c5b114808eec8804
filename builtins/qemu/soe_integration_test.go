package qemu

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.starlark.net/starlark"
	gossh "golang.org/x/crypto/ssh"

	"github.com/studiorun/studiorun/builtins/ssh"
	"github.com/studiorun/studiorun/builtins/ssh/sshtest"
	"github.com/studiorun/studiorun/runtime"
	"github.com/studiorun/studiorun/runtime/apply"
)

// TestSOEFromDebianBaseProvisionedBySSHDriver is `soe.star up --var
// source=disk` without the CLI: scripts/soe.star evaluated in a copy of
// the project whose base image is the Debian base image, built by this
// driver with the ssh driver as its Provisioner (the ops_user role's
// tasks run on the build VM). Two clones of the image then boot as
// libvirt domains, one from a virtio disk and one from a SCSI disk (see
// bootSOEClones).
func TestSOEFromDebianBaseProvisionedBySSHDriver(t *testing.T) {
	needPrograms(t, "qemu-system-x86_64", "qemu-img", "debootstrap")
	images := sshtest.BuildImage(t, "debian-base.sh")
	root := t.TempDir()
	for _, dir := range []string{".git", "scripts/keys", "build"} {
		os.MkdirAll(filepath.Join(root, dir), 0o755)
	}
	soe, err := os.ReadFile(filepath.Join("..", "..", "scripts", "soe.star"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(root, "scripts", "soe.star"), soe, 0o644)
	_, ops := sshtest.NewKey(t)
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

	bootSOEClones(t, ctx, root, ops)
}

// bootSOEClones boots two clones of the SOE image in root/build as
// libvirt domains on qemu:///system, through the libvirt driver, as
// studio.star runs its hosts: copy-on-write volumes on the uploaded
// image, one on a virtio disk and one on a SCSI disk (a virtio-scsi
// controller), on a NAT network with a DHCP reservation each. Both boot
// at once; on each the ops user logs in with its key and has sudo, the
// root file system is on the disk of that bus, and the two have
// different machine-ids and SSH host keys.
func bootSOEClones(t *testing.T, ctx context.Context, root string, ops gossh.Signer) {
	t.Helper()
	needLibvirt(t)
	pool := "/var/lib/libvirt/images/studiorun-test-soepool-" + testSuffix
	t.Cleanup(func() { os.RemoveAll(pool) })
	plan := evalProject(t, root, "clones.star", fmt.Sprintf(`
s = %q
pool = libvirt.pool("studiorun-test-soepool-" + s, path = %q)
soe = libvirt.volume("studiorun-test-soe-" + s, pool = pool, source = "//build/vfx-studio-soe_0.1.0.qcow2")
net = libvirt.network("studiorun-test-soenet-" + s, subnet = "10.251.44.0/24", dhcp_range = ("10.251.44.100", "10.251.44.200"), autostart = False)

def clone(i, bus):
    name = "studiorun-test-soe-%%s-%%s" %% (bus, s)
    disk = libvirt.volume(name, pool = pool, base = soe)
    dhcp.reservation(net, mac = dhcp.laa(i), ip = "10.251.44.%%d" %% (10 + i), hostname = "soe-" + bus)
    libvirt.domain(name, vcpu = 1, memory = "1GiB", disks = [libvirt.disk(disk, bus = bus)],
        nics = [libvirt.nic(network = net, mac = dhcp.laa(i))], shutdown_timeout = "5s")

clone(1, "virtio")
clone(2, "scsi")
`, testSuffix, pool))
	start := time.Now()
	upLibvirt(t, ctx, root, plan)
	t.Logf("the clones' pool, upload, overlays, network and domains: %s", time.Since(start).Round(100*time.Millisecond))
	type seen struct{ machineID, hostKey string }
	var mu sync.Mutex
	clones := map[string]seen{}
	t.Run("boot", func(t *testing.T) {
		for i, bus := range []string{"virtio", "scsi"} {
			t.Run(bus, func(t *testing.T) {
				t.Parallel()
				addr := fmt.Sprintf("10.251.44.%d:22", 11+i)
				client, hostKey := waitSSH(t, ctx, addr, "ops", ops, func() string { return "(its console: virsh console studiorun-test-soe-" + bus + "-" + testSuffix + ")" })
				out, err := runSSH(client, "id -un; id -Gn; sudo -n id -u; cat /etc/machine-id; findmnt -no SOURCE /")
				if err != nil {
					t.Fatalf("%v: %s", err, out)
				}
				lines := strings.Split(strings.TrimSpace(out), "\n")
				dev := map[string]string{"virtio": "/dev/vda", "scsi": "/dev/sda"}[bus]
				if len(lines) != 5 || lines[0] != "ops" || !strings.Contains(" "+lines[1]+" ", " sudo ") || lines[2] != "0" || len(lines[3]) != 32 || !strings.HasPrefix(lines[4], dev) {
					t.Errorf("on the %s clone, as ops: %q; want ops, in group sudo, sudo to uid 0, a machine-id, / on %s", bus, lines, dev)
				}
				mu.Lock()
				defer mu.Unlock()
				clones[bus] = seen{machineID: lines[3], hostKey: string(hostKey.Marshal())}
			})
		}
	})
	t.Logf("both clones booted to SSH in %s", time.Since(start).Round(100*time.Millisecond))
	if v, s := clones["virtio"], clones["scsi"]; len(clones) == 2 && (v.machineID == s.machineID || v.hostKey == s.hostKey) {
		t.Errorf("the clones share a machine-id (%s, %s) or a host key: each clone must make its own", v.machineID, s.machineID)
	}
}
