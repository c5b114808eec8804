package qemu

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.starlark.net/starlark"

	"github.com/studiorun/studiorun/builtins/ssh/sshtest"
	"github.com/studiorun/studiorun/runtime"
)

// printableKeys is every printable ASCII character but the space, the
// digits and lowercase letters that the rest of the command line types
// already ("linux ks=http://10.0.2.2:PORT/ks.cfg"): isolinux keeps only
// 127 characters of a command line. "<=>", "|" and ":" are included, as
// Packer's typing drops or mistypes them.
func printableKeys() string {
	var b strings.Builder
	for c := byte('!'); c <= '~'; c++ {
		if c >= 'a' && c <= 'z' && strings.IndexByte("linuxkshtpcfg", c) >= 0 {
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// TestISOBuildTypesBootCommandAndServesKickstart boots the test ISO
// (testdata/images/test-iso.sh) under TCG, types at isolinux's boot:
// prompt a boot command that adds ks=http://{{ .HTTPIP }}:{{ .HTTPPort }}/ks.cfg
// and every printable ASCII character, and checks that the guest fetched
// the kickstart from the build's HTTP server and wrote it, with the
// command line it booted with, to the disk that became the output image.
func TestISOBuildTypesBootCommandAndServesKickstart(t *testing.T) {
	needPrograms(t, "qemu-system-x86_64", "qemu-img", "xorriso")
	iso := filepath.Join(sshtest.BuildImage(t, "test-iso.sh"), "studiorun-test.iso")
	sum, err := sha256File(iso)
	if err != nil {
		t.Fatal(err)
	}
	kickstart := "# studiorun test kickstart\nrootpw --plaintext not-a-secret\n"
	ks, err := runtime.UnpackText("ks", starlark.String(kickstart))
	if err != nil {
		t.Fatal(err)
	}
	keys := printableKeys()
	root := t.TempDir()
	spec := &Image{
		Version: "1", Source: "iso", ISO: iso, ISOChecksum: "sha256:" + sum,
		OutputDir: "out", OutputFile: "ks-test_1.qcow2", Format: "qcow2",
		DiskSize: 16, Memory: 256, CPUs: 1, Accelerator: "tcg",
		HTTPFiles:   map[string]*runtime.Text{"ks.cfg": ks},
		BootWait:    runtime.Duration(3 * time.Second),
		BootCommand: []string{"linux ks=http://{{ .HTTPIP }}:{{ .HTTPPort }}/ks.cfg", " k=" + keys + "<enter>"},
		SSHUsername: "root", SSHTimeout: runtime.Duration(time.Minute),
		ShutdownCommand: "poweroff", ShutdownTimeout: runtime.Duration(time.Minute),
	}
	r := &runtime.Resource{Address: "qemu.image.ks-test", Name: "ks-test", Spec: spec}
	d := NewDriver(root, Options{CacheDir: t.TempDir()})
	b := d.newBuild(r, spec, newTestReporter(t))
	if b.inputs, err = computeInputs(r, spec, nil, b.resolve, nil); err != nil {
		t.Fatal(err)
	}
	b.skipSSH = true // the test installer powers off by itself
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := d.build(ctx, b); err != nil {
		serial, _ := os.ReadFile(filepath.Join(root, "out", spec.OutputFile+".serial.log"))
		t.Fatalf("build: %v\nserial log:\n%s", err, serial)
	}
	t.Logf("ISO build (boot, boot command, kickstart fetched, power off, convert): %s", time.Since(start).Round(100*time.Millisecond))
	noQemuLeft(t, root)

	image := filepath.Join(root, "out", "ks-test_1.qcow2")
	data := kickstartMarker(t, image, kickstart)
	if !strings.Contains(string(data), " k="+keys+"\n") && !strings.Contains(string(data), " k="+keys+" ") {
		t.Errorf("the kernel command line typed over QMP is not intact:\n got %q\nwant k=%s", strings.Split(string(data), "\n")[1], keys)
	}
	if !strings.HasSuffix(string(data), kickstart) {
		t.Errorf("the disk does not end with the kickstart: %q", data)
	}
	m, err := readManifest(manifestPath(image))
	if err != nil || m == nil {
		t.Fatalf("manifest: %v, %v", m, err)
	}
	if m.InputsHash != b.inputs.Hash() || m.Accelerator != "tcg" || m.Size == 0 {
		t.Errorf("manifest %+v", m)
	}
	entries, _ := os.ReadDir(root)
	for _, e := range entries {
		if e.Name() != "out" {
			t.Errorf("left behind in the project: %s", e.Name())
		}
	}
}

// kickstartMarker returns what the test installer wrote at the start of
// image (up to the first NUL byte) and fails unless it starts with the
// line that says it fetched kickstart.
func kickstartMarker(t *testing.T, image, kickstart string) []byte {
	t.Helper()
	raw := filepath.Join(t.TempDir(), "disk.raw")
	if out, err := exec.Command("qemu-img", "convert", "-O", "raw", image, raw).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img convert: %v: %s", err, out)
	}
	data, err := os.ReadFile(raw)
	if err != nil {
		t.Fatal(err)
	}
	if i := bytes.IndexByte(data, 0); i >= 0 {
		data = data[:i]
	}
	ksSum := sha256.Sum256([]byte(kickstart))
	if want := "studiorun-ks-ok " + hex.EncodeToString(ksSum[:]) + "\n"; !strings.HasPrefix(string(data), want) {
		t.Fatalf("the disk starts with %q, want the marker %q", strings.SplitN(string(data), "\n", 2)[0], want)
	}
	return data
}

// TestISOWithWrongChecksumFailsBeforeQemu pins that an ISO that does not
// match iso_checksum is never booted and leaves nothing behind.
func TestISOWithWrongChecksumFailsBeforeQemu(t *testing.T) {
	root := t.TempDir()
	iso := filepath.Join(root, "fake.iso")
	if err := os.WriteFile(iso, []byte("not an iso"), 0o644); err != nil {
		t.Fatal(err)
	}
	spec := &Image{
		Version: "1", Source: "iso", ISO: "fake.iso", ISOChecksum: "sha256:" + strings.Repeat("0", 64),
		OutputDir: "out", OutputFile: "x_1.qcow2", Format: "qcow2", DiskSize: 16, Memory: 256, CPUs: 1,
		Accelerator: "tcg", SSHUsername: "root", ShutdownCommand: "poweroff",
	}
	r := &runtime.Resource{Address: "qemu.image.x", Name: "x", Spec: spec}
	tools := &fakeTools{}
	d := NewDriver(root, Options{Tools: tools})
	b := d.newBuild(r, spec, newTestReporter(t))
	b.inputs = &inputs{Parts: map[string]string{}}
	err := d.build(context.Background(), b)
	if err == nil || !strings.Contains(err.Error(), "want "+strings.Repeat("0", 64)+" (iso_checksum)") {
		t.Fatalf("build: %v, want a checksum error", err)
	}
	if tools.started != 0 {
		t.Errorf("qemu was started %d times", tools.started)
	}
	entries, _ := os.ReadDir(root)
	for _, e := range entries {
		if e.Name() != "fake.iso" && e.Name() != "out" {
			t.Errorf("left behind: %s", e.Name())
		}
	}
	if out, _ := os.ReadDir(filepath.Join(root, "out")); len(out) != 0 {
		t.Errorf("output_dir holds %v", out)
	}
}

// TestCancelledBuildLeavesNothing cancels an ISO build (as Ctrl-C does) at
// several points: before qemu starts, while it boots, while the boot
// command waits, and while the builder waits for SSH. Each time no qemu
// is left running, no build folder remains and no image is written.
func TestCancelledBuildLeavesNothing(t *testing.T) {
	needPrograms(t, "qemu-system-x86_64", "qemu-img", "xorriso")
	iso := filepath.Join(sshtest.BuildImage(t, "test-iso.sh"), "studiorun-test.iso")
	sum, err := sha256File(iso)
	if err != nil {
		t.Fatal(err)
	}
	ks, _ := runtime.UnpackText("ks", starlark.String("ks\n"))
	for _, after := range []time.Duration{0, 150 * time.Millisecond, 1500 * time.Millisecond, 6 * time.Second} {
		t.Run(after.String(), func(t *testing.T) {
			root := t.TempDir()
			spec := &Image{
				Version: "1", Source: "iso", ISO: iso, ISOChecksum: "sha256:" + sum,
				OutputDir: "out", OutputFile: "cancel_1.qcow2", Format: "qcow2",
				DiskSize: 16, Memory: 256, CPUs: 1, Accelerator: "tcg",
				HTTPFiles: map[string]*runtime.Text{"ks.cfg": ks}, BootWait: runtime.Duration(time.Second),
				// <wait30> keeps the boot command typing when cancelled at 1.5s.
				BootCommand: []string{"<wait30>linux ks=http://{{ .HTTPIP }}:{{ .HTTPPort }}/ks.cfg<enter>"},
				SSHUsername: "root", SSHPassword: nil, SSHTimeout: runtime.Duration(time.Minute),
				ShutdownCommand: "poweroff", ShutdownTimeout: runtime.Duration(time.Minute),
			}
			if after == 6*time.Second {
				spec.BootCommand = nil // isolinux waits at boot: while the builder waits for SSH
			}
			r := &runtime.Resource{Address: "qemu.image.cancel", Name: "cancel", Spec: spec}
			d := NewDriver(root, Options{})
			b := d.newBuild(r, spec, newTestReporter(t))
			b.inputs = &inputs{Parts: map[string]string{}}
			ctx, cancel := context.WithCancel(context.Background())
			if after == 0 {
				cancel()
			} else {
				time.AfterFunc(after, cancel)
			}
			err := d.build(ctx, b)
			cancel()
			if err == nil || !strings.Contains(err.Error(), "context canceled") {
				t.Fatalf("build: %v, want cancelled", err)
			}
			noQemuLeft(t, root)
			entries, _ := os.ReadDir(root)
			for _, e := range entries {
				if e.Name() != "out" {
					t.Errorf("left behind: %s", e.Name())
				}
			}
			if out, _ := os.ReadDir(filepath.Join(root, "out")); len(out) != 0 {
				t.Errorf("output_dir holds %v", out)
			}
		})
	}
}

// TestKilledBuilderTakesQemuAlong kills (SIGKILL, no cleanups) a process
// that started qemu through the builder's tools: qemu goes too.
func TestKilledBuilderTakesQemuAlong(t *testing.T) {
	if os.Getenv("STUDIORUN_QEMU_HELPER") == "1" {
		tools := newExecTools("", "")
		p, err := tools.Start([]string{"-machine", "pc,accel=tcg", "-display", "none", "-nodefaults", "-m", "32"}, os.Stderr)
		if err != nil {
			os.Exit(3)
		}
		fmt.Println(p.(*execProcess).cmd.Process.Pid)
		time.Sleep(time.Minute)
		return
	}
	needPrograms(t, "qemu-system-x86_64")
	cmd := exec.Command(os.Args[0], "-test.run=^TestKilledBuilderTakesQemuAlong$")
	cmd.Env = append(os.Environ(), "STUDIORUN_QEMU_HELPER=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var pid int
	if _, err := fmt.Fscan(out, &pid); err != nil {
		cmd.Process.Kill()
		t.Fatalf("the helper did not start qemu: %v", err)
	}
	cmd.Process.Kill()
	cmd.Wait()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			break
		}
		if data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); strings.Contains(string(data), ") Z ") {
			break // a zombie: dead, waiting for init to reap it
		}
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("qemu (pid %d) outlived the killed builder", pid)
		}
	}
}
