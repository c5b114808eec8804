package qemu

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.starlark.net/starlark"
	"golang.org/x/crypto/ssh"

	"github.com/studiorun/studiorun/builtins/ssh/sshtest"
	"github.com/studiorun/studiorun/runtime"
	"github.com/studiorun/studiorun/runtime/apply"
)

// TestBuildOnLibvirtNetwork builds on a libvirt NAT network that the test
// declares and creates (and removes at the end) rather than on user-mode
// networking, with the build VM's NIC on the network's bridge:
//   - the Debian base image, declared in Starlark with network = the
//     libvirt.network: the builder finds the VM at its DHCP lease and
//     provisions, seals and shuts it down over SSH on the network;
//   - the test ISO: its installer fetches the kickstart from the build's
//     HTTP server, listening on the host's address on the network;
//   - the test ISO again, cancelled while qemu runs: no qemu and no tap
//     on the bridge are left.
func TestBuildOnLibvirtNetwork(t *testing.T) {
	needPrograms(t, "qemu-system-x86_64", "qemu-img", "xorriso", "debootstrap")
	needLibvirt(t)
	iso := filepath.Join(sshtest.BuildImage(t, "test-iso.sh"), "studiorun-test.iso")
	images := sshtest.BuildImage(t, "debian-base.sh")
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "base"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"debian-12-base.qcow2", "debian-12-base.qcow2.key"} {
		if err := os.Symlink(filepath.Join(images, f), filepath.Join(root, "base", f)); err != nil {
			t.Fatal(err)
		}
	}
	netName, br := "studiorun-test-bnet-"+testSuffix, "srtb"+testSuffix
	allowBridge(t, br)
	plan := evalProject(t, root, "build.star", fmt.Sprintf(`
net = libvirt.network(%q, subnet = "10.251.43.0/24", dhcp_range = ("10.251.43.100", "10.251.43.200"),
    bridge = %q, autostart = False)

def role(host):
    host.user("nettest")

qemu.image("net-test", "1", source = "disk", base_image = "base/debian-12-base.qcow2",
    ssh_private_key = "base/debian-12-base.qcow2.key", disk_size = 2048, memory = 1024,
    ssh_timeout = "5m", shutdown_timeout = "2m", provision = role, network = net)
`, netName, br))
	// The subtests run in parallel after this function returns.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	t.Cleanup(cancel)
	upLibvirt(t, ctx, root, plan)
	r := plan.Resource("qemu.image.net-test")
	if spec := r.Spec.(*Image); spec.Network != netName || !slices.Contains(r.DependsOn, runtime.Address("libvirt.network."+netName)) {
		t.Fatalf("network %q, depends on %v: want %s and a dependency on it", spec.Network, r.DependsOn, netName)
	}

	t.Run("disk", func(t *testing.T) {
		t.Parallel()
		keyData, err := os.ReadFile(filepath.Join(images, "debian-12-base.qcow2.key"))
		if err != nil {
			t.Fatal(err)
		}
		builderKey, err := ssh.ParsePrivateKey(keyData)
		if err != nil {
			t.Fatal(err)
		}
		prov := &keyProvisioner{builderKey: builderKey, secondKey: builderKey.PublicKey()}
		d := NewDriver(root, Options{Provisioner: prov})
		d.SetPlan(plan)
		c, err := d.Diff(ctx, r, nil)
		if err != nil || c.Action != apply.Create {
			t.Fatalf("Diff: %+v, %v", c, err)
		}
		rep := &noteRecorder{testReporter: newTestReporter(t)}
		start := time.Now()
		if _, err := d.Apply(ctx, r, c, rep); err != nil {
			serial, _ := os.ReadFile(filepath.Join(root, "build", "net-test_1.qcow2.serial.log"))
			t.Fatalf("Apply: %v\nserial log:\n%s", err, tail(serial, 3000))
		}
		t.Logf("disk build on libvirt network %s: %s", netName, time.Since(start).Round(100*time.Millisecond))
		if len(prov.calls) != 1 || !strings.HasPrefix(prov.calls[0], "ssh.host.net-test-build 10.251.43.") || !strings.HasSuffix(prov.calls[0], ":22") {
			t.Errorf("provisioner calls %v: want one, at port 22 of an address of 10.251.43.0/24", prov.calls)
		}
		for _, want := range []string{"joining libvirt network " + netName + " (bridge " + br + ", host 10.251.43.1/24)", "the build VM has 10.251.43.", "boot to SSH ", "built build/net-test_1.qcow2 in "} {
			if !strings.Contains(rep.notes.String(), want) {
				t.Errorf("no note %q in:\n%s", want, rep.notes.String())
			}
		}
	})

	sum, err := sha256File(iso)
	if err != nil {
		t.Fatal(err)
	}
	kickstart := "# studiorun network kickstart\n"
	ks, _ := runtime.UnpackText("ks", starlark.String(kickstart))
	isoBuild := func(t *testing.T, name string, rep apply.Reporter) (*Driver, *build) {
		spec := &Image{
			Version: "1", Source: "iso", ISO: iso, ISOChecksum: "sha256:" + sum,
			OutputDir: "out", OutputFile: name + "_1.qcow2", Format: "qcow2",
			DiskSize: 16, Memory: 256, CPUs: 1, Accelerator: "tcg",
			HTTPFiles:   map[string]*runtime.Text{"ks.cfg": ks},
			BootWait:    runtime.Duration(3 * time.Second),
			BootCommand: []string{"linux ks=http://{{ .HTTPIP }}:{{ .HTTPPort }}/ks.cfg<enter>"},
			SSHUsername: "root", SSHTimeout: runtime.Duration(2 * time.Minute),
			ShutdownCommand: "poweroff", ShutdownTimeout: runtime.Duration(time.Minute),
			Network: netName,
		}
		d := NewDriver(root, Options{CacheDir: t.TempDir()})
		b := d.newBuild(&runtime.Resource{Address: runtime.Address("qemu.image." + name), Name: name, Spec: spec}, spec, rep)
		b.inputs = &inputs{Parts: map[string]string{}}
		b.skipSSH = true // the test installer powers off by itself
		return d, b
	}

	t.Run("iso", func(t *testing.T) {
		t.Parallel()
		rep := &noteRecorder{testReporter: newTestReporter(t)}
		d, b := isoBuild(t, "ks-net", rep)
		if err := d.build(ctx, b); err != nil {
			serial, _ := os.ReadFile(filepath.Join(root, "out", "ks-net_1.qcow2.serial.log"))
			t.Fatalf("build: %v\nserial log:\n%s", err, tail(serial, 3000))
		}
		kickstartMarker(t, filepath.Join(root, "out", "ks-net_1.qcow2"), kickstart)
		if !strings.Contains(rep.notes.String(), "the installer fetched /ks.cfg") {
			t.Errorf("the HTTP server saw no fetch:\n%s", rep.notes.String())
		}
	})

	t.Run("cancelled", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		var ports []string
		rep := &hookReporter{testReporter: newTestReporter(t), hook: func(note string) {
			if strings.Contains(note, "(boot_wait)") { // qemu runs, on the bridge
				ports = bridgePorts(br)
				cancel()
			}
		}}
		d, b := isoBuild(t, "ks-cancel", rep)
		b.spec.BootWait = runtime.Duration(time.Minute)
		if err := d.build(ctx, b); err == nil || !strings.Contains(err.Error(), "context canceled") {
			t.Fatalf("build: %v, want cancelled", err)
		}
		if len(ports) == 0 {
			t.Errorf("no tap on %s while qemu ran", br)
		}
		t.Logf("on %s while the cancelled build's qemu ran: %v", br, ports)
	})

	t.Cleanup(func() {
		noQemuLeft(t, root)
		if left := bridgePorts(br); len(left) > 0 {
			t.Errorf("devices left on %s after the builds: %v", br, left)
		}
	})
}

// hookReporter calls hook with every note.
type hookReporter struct {
	*testReporter
	hook func(note string)
}

func (r *hookReporter) Notef(addr runtime.Address, format string, args ...any) {
	r.testReporter.Notef(addr, format, args...)
	r.hook(fmt.Sprintf(format, args...))
}
