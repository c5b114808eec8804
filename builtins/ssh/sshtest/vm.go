package sshtest

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	studiossh "github.com/studiorun/studiorun/builtins/ssh"
)

// VM is a guest of the Debian 12 base image that
// testdata/images/debian-base.sh builds (and caches), for tests that need
// what the namespace test hosts lack: systemd as pid 1, a kernel of its
// own. It runs under qemu-system-x86_64 with -snapshot (the cached image
// is never written), TCG (nested KVM is not assumed) and user-mode
// networking; its sshd is forwarded to Address:Port, and root logs in
// with the image's builder key (KeyPath).
type VM struct {
	Address string // 127.0.0.1
	Port    int    // forwarded to the guest's port 22
	User    string // "root"
	KeyPath string // the image's builder key
	Signer  ssh.Signer

	HostKey ssh.PublicKey // the guest's host key, made at its first boot
	// KnownHostsLine is HostKey as a known_hosts line for Address:Port.
	KnownHostsLine string

	client *ssh.Client // the test's own connection, for Exec and WriteFile
}

// NeedIntegration skips t with reason, or fails it when
// STUDIORUN_REQUIRE_INTEGRATION=1 (CI).
func NeedIntegration(t testing.TB, reason string) {
	t.Helper()
	if os.Getenv("STUDIORUN_REQUIRE_INTEGRATION") == "1" {
		t.Fatalf("STUDIORUN_REQUIRE_INTEGRATION=1 and %s", reason)
	}
	t.Skip(reason)
}

// ImagesDir is where testdata/images/*.sh cache their images:
// $STUDIORUN_CACHE/images, else ~/.cache/studiorun/images.
func ImagesDir() string {
	if d := os.Getenv("STUDIORUN_CACHE"); d != "" {
		return filepath.Join(d, "images")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return filepath.Join(os.TempDir(), "studiorun-cache", "images")
	}
	return filepath.Join(home, ".cache", "studiorun", "images")
}

var imageMu sync.Mutex

// BuildImage runs testdata/images/<script> (which caches its image by its
// inputs) and returns the folder holding the image, ImagesDir(). A script
// that exits 3 names what is missing: t is skipped, or fails when
// STUDIORUN_REQUIRE_INTEGRATION=1.
func BuildImage(t testing.TB, script string) string {
	t.Helper()
	imageMu.Lock()
	defer imageMu.Unlock()
	path, err := repoFile(filepath.Join("testdata", "images", script), "")
	if err != nil {
		t.Fatalf("sshtest: %v", err)
	}
	dir := ImagesDir()
	out, err := exec.Command("sh", path, dir).CombinedOutput()
	var exit *exec.ExitError
	if errors.As(err, &exit) && exit.ExitCode() == 3 {
		NeedIntegration(t, fmt.Sprintf("testdata/images/%s: %s", script, strings.TrimSpace(string(out))))
	}
	if err != nil {
		t.Fatalf("sshtest: testdata/images/%s: %v\n%s", script, err, out)
	}
	t.Logf("testdata/images/%s: %s", script, lastLine(string(out)))
	return dir
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// BootVM boots a VM of the Debian base image for t (building the image
// first if it is not cached) and waits until root can log in over SSH;
// qemu is killed when t finishes. Without qemu-system-x86_64 or the
// image's build tools it skips t, or fails it when
// STUDIORUN_REQUIRE_INTEGRATION=1.
func BootVM(t testing.TB) *VM {
	t.Helper()
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		NeedIntegration(t, "qemu-system-x86_64 is not installed")
	}
	image := filepath.Join(BuildImage(t, "debian-base.sh"), "debian-12-base.qcow2")
	vm := &VM{Address: "127.0.0.1", User: "root", KeyPath: image + ".key"}
	keyPEM, err := os.ReadFile(vm.KeyPath)
	if err != nil {
		t.Fatalf("sshtest: the image's key: %v", err)
	}
	if vm.Signer, err = ssh.ParsePrivateKey(keyPEM); err != nil {
		t.Fatalf("sshtest: the image's key %s: %v", vm.KeyPath, err)
	}
	if vm.Port, err = freePort(); err != nil {
		t.Fatalf("sshtest: %v", err)
	}

	work := t.TempDir()
	serial := filepath.Join(work, "serial.log")
	cmd := exec.Command("qemu-system-x86_64",
		"-name", fmt.Sprintf("studiorun-test-%d-%d", os.Getpid(), vm.Port),
		"-machine", "pc", "-accel", "tcg",
		"-m", "1024", "-smp", "2",
		"-display", "none", "-serial", "file:"+serial,
		"-netdev", fmt.Sprintf("user,id=net0,hostfwd=tcp:%s:%d-:22", vm.Address, vm.Port),
		"-device", "virtio-net-pci,netdev=net0",
		"-drive", "file="+image+",if=virtio,format=qcow2",
		"-snapshot")
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	// qemu dies with the test process, whatever happens to it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatalf("sshtest: start qemu: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		if vm.client != nil {
			vm.client.Close()
		}
		cmd.Process.Kill()
		<-exited
	})

	vm.client, err = vm.waitForSSH(exited, 5*time.Minute)
	if err != nil {
		t.Fatalf("sshtest: VM on port %d: %v\nqemu: %s\nserial console (end):\n%s", vm.Port, err, strings.TrimSpace(stderr.String()), tail(serial, 20))
	}
	vm.KnownHostsLine = knownhosts.Line([]string{knownhosts.Normalize(vm.Addr())}, vm.HostKey)
	t.Logf("sshtest: VM booted (TCG) and answers SSH on %s after %s", vm.Addr(), time.Since(start).Round(100*time.Millisecond))
	return vm
}

// Addr is Address:Port, for net.Dial and ssh.Dial.
func (vm *VM) Addr() string { return net.JoinHostPort(vm.Address, strconv.Itoa(vm.Port)) }

// waitForSSH dials the guest until root logs in, qemu exits or timeout
// passes; the first host key the guest shows is the one trusted.
func (vm *VM) waitForSSH(exited <-chan error, timeout time.Duration) (*ssh.Client, error) {
	cfg := &ssh.ClientConfig{
		User: vm.User,
		Auth: []ssh.AuthMethod{ssh.PublicKeys(vm.Signer)},
		HostKeyCallback: func(_ string, _ net.Addr, key ssh.PublicKey) error {
			if vm.HostKey != nil && !bytes.Equal(vm.HostKey.Marshal(), key.Marshal()) {
				return errors.New("the guest's host key changed")
			}
			vm.HostKey = key
			return nil
		},
		Timeout: 10 * time.Second,
	}
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			return nil, fmt.Errorf("qemu exited: %v", err)
		default:
		}
		c, err := ssh.Dial("tcp", vm.Addr(), cfg)
		if err == nil {
			return c, nil
		}
		last = err
		time.Sleep(500 * time.Millisecond)
	}
	return nil, fmt.Errorf("no SSH login within %s: %v", timeout, last)
}

// Exec runs cmd with /bin/sh on the guest over the test's own SSH
// connection (not the code under test's). It returns the standard output;
// a failure's error includes the standard error.
func (vm *VM) Exec(cmd string) (string, error) {
	return vm.session(cmd, nil)
}

// WriteFile writes data to path on the guest (its directory is created).
func (vm *VM) WriteFile(path string, data []byte) error {
	q := studiossh.Quote(path)
	_, err := vm.session("mkdir -p \"$(dirname "+q+")\" && cat > "+q, bytes.NewReader(data))
	return err
}

func (vm *VM) session(cmd string, stdin *bytes.Reader) (string, error) {
	s, err := vm.client.NewSession()
	if err != nil {
		return "", fmt.Errorf("VM %s: %q: %w", vm.Addr(), cmd, err)
	}
	defer s.Close()
	var stdout, stderr bytes.Buffer
	s.Stdout, s.Stderr = &stdout, &stderr
	if stdin != nil {
		s.Stdin = stdin
	}
	if err := s.Run(cmd); err != nil {
		return stdout.String(), fmt.Errorf("VM %s: %q: %v: %s", vm.Addr(), cmd, err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// freePort returns a TCP port of 127.0.0.1 that is free now.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// tail returns the last n lines of a file, for errors.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
