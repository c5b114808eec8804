// Package sshtest gives tests real OpenSSH servers on this machine: each test
// host is a network namespace with its own address on the bridge srtest0
// (10.77.0.0/24), running Debian's sshd chrooted into an overlay of a cached
// debootstrap root filesystem, in its own mount, pid and UTS namespaces, so
// its /etc (users, sudoers, fstab), /home and mounts are its own.
//
// The hosts are made by testdata/hosts/testhosts.sh; Hosts needs root,
// ip (iproute2), nsenter and unshare (util-linux), ssh-keygen, and debootstrap
// with a reachable Debian mirror the first time (the root filesystem is then
// cached under $STUDIORUN_CACHE or ~/.cache/studiorun). Without them Hosts
// skips the test with the reason, or fails it when
// STUDIORUN_REQUIRE_INTEGRATION=1 (CI).
package sshtest

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// Host is one test host. Its sshd accepts User (root) with the private key
// in KeyPath (also as Signer) and presents HostKey.
type Host struct {
	Name    string // host name, also its netns name (`ip netns exec Name ...`)
	Address string // IPv4 address, e.g. 10.77.0.10
	Port    int    // 22
	User    string // "root"
	KeyPath string // private key file (OpenSSH format) authorized for User
	Signer  ssh.Signer

	HostKey ssh.PublicKey // the host's current ed25519 host key
	// KnownHostsLine is HostKey as a known_hosts line for Address.
	KnownHostsLine string

	script string
	dir    string // the host's state dir (init.pid, upper layer, ...)
}

// Addr is Address:Port, for net.Dial and ssh.Dial.
func (h *Host) Addr() string { return net.JoinHostPort(h.Address, strconv.Itoa(h.Port)) }

// ClientConfig is a client configuration for User with the test key that
// accepts exactly HostKey.
func (h *Host) ClientConfig() *ssh.ClientConfig {
	return &ssh.ClientConfig{
		User:            h.User,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(h.Signer)},
		HostKeyCallback: ssh.FixedHostKey(h.HostKey),
		Timeout:         5 * time.Second,
	}
}

// Exec runs cmd with /bin/sh inside the host (its namespaces and root), not
// over SSH, so a test checks a host's state independently of the code under
// test. It returns the standard output; a failure's error includes the
// standard error.
func (h *Host) Exec(cmd string) (string, error) {
	pid, err := h.initPid()
	if err != nil {
		return "", err
	}
	c := exec.Command("nsenter", "-t", pid, "-m", "-n", "-p", "-u", "-r", "-w",
		"env", "-i", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=/root", "LANG=C.UTF-8", "/bin/sh", "-c", cmd)
	var stdout, stderr bytes.Buffer
	c.Stdout, c.Stderr = &stdout, &stderr
	if err := c.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s: %q: %v: %s", h.Name, cmd, err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// Stop kills the host's sshd and every session on it: open connections
// drop, new ones are refused (a host that goes down mid-run). The host's
// files and address stay; Start brings sshd back.
func (h *Host) Stop() error { return h.run("stop", h.Name) }

// Start starts the host's sshd again after Stop and waits until it listens.
func (h *Host) Start() error { return h.run("start", h.Name) }

// ChangeHostKey gives the host a new host key and restarts its sshd (open
// connections drop); HostKey and KnownHostsLine change to the new key.
func (h *Host) ChangeHostKey() error {
	if err := h.run("rekey", h.Name); err != nil {
		return err
	}
	return h.readHostKey()
}

func (h *Host) initPid() (string, error) {
	b, err := os.ReadFile(filepath.Join(h.dir, "init.pid"))
	if err != nil {
		return "", fmt.Errorf("host %s is gone: %v", h.Name, err)
	}
	return strings.TrimSpace(string(b)), nil
}

func (h *Host) readHostKey() error {
	pid, err := h.initPid()
	if err != nil {
		return err
	}
	b, err := os.ReadFile(filepath.Join("/proc", pid, "root/etc/ssh/ssh_host_ed25519_key.pub"))
	if err != nil {
		return fmt.Errorf("host key of %s: %v", h.Name, err)
	}
	k, _, _, _, err := ssh.ParseAuthorizedKey(b)
	if err != nil {
		return fmt.Errorf("host key of %s: %v", h.Name, err)
	}
	h.HostKey = k
	h.KnownHostsLine = knownhosts.Line([]string{knownhosts.Normalize(h.Addr())}, k)
	return nil
}

func (h *Host) run(args ...string) error { return runScript(h.script, args...) }

func runScript(script string, args ...string) error {
	_, err := outputScript(script, args...)
	return err
}

func outputScript(script string, args ...string) (string, error) {
	c := exec.Command("bash", append([]string{script}, args...)...)
	c.Env = append(os.Environ(), "STUDIORUN_TESTHOSTS_OWNER="+strconv.Itoa(os.Getpid()))
	var stdout, stderr bytes.Buffer
	c.Stdout, c.Stderr = &stdout, &stderr
	if err := c.Run(); err != nil {
		return stdout.String(), fmt.Errorf("testhosts.sh %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// StateDir is where testhosts.sh keeps its hosts.
func StateDir() string {
	if d := os.Getenv("STUDIORUN_TESTHOSTS_DIR"); d != "" {
		return d
	}
	return "/run/studiorun-testhosts"
}

// Script is the path of testdata/hosts/testhosts.sh in this repository
// ($STUDIORUN_TESTHOSTS_SCRIPT overrides it).
func Script() (string, error) {
	return repoFile("testdata/hosts/testhosts.sh", "STUDIORUN_TESTHOSTS_SCRIPT")
}

// repoFile returns the path of the file rel of this repository, found
// from the working directory up or from this source file; the variable
// env (when not "") overrides it.
func repoFile(rel, env string) (string, error) {
	if env != "" {
		if s := os.Getenv(env); s != "" {
			return s, nil
		}
	}
	if wd, err := os.Getwd(); err == nil {
		for d := wd; ; d = filepath.Dir(d) {
			if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
				if _, err := os.Stat(filepath.Join(d, rel)); err == nil {
					return filepath.Join(d, rel), nil
				}
			}
			if filepath.Dir(d) == d {
				break
			}
		}
	}
	if _, file, _, ok := runtime.Caller(0); ok {
		p := filepath.Join(filepath.Dir(file), "..", "..", "..", rel)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	if env != "" {
		return "", fmt.Errorf("%s not found (set %s)", rel, env)
	}
	return "", fmt.Errorf("%s not found", rel)
}

var (
	prepareOnce sync.Once
	prepareErr  error // why hosts cannot be made here
	prepareEnv  bool  // prepareErr is a missing component, not a failure
	script      string
	seq         atomic.Int64
)

// prepare checks the requirements, removes hosts left by dead test
// processes and builds the cached root filesystem (once per process; the
// script serializes builds across processes with a lock in the cache dir).
func prepare() {
	var err error
	script, err = Script()
	if err != nil {
		prepareErr, prepareEnv = err, true
		return
	}
	if os.Geteuid() != 0 {
		prepareErr, prepareEnv = errors.New("test hosts need root (network namespaces, mounts)"), true
		return
	}
	var missing []string
	for _, tool := range []string{"ip", "nsenter", "unshare", "ssh-keygen", "flock"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) > 0 {
		prepareErr = fmt.Errorf("test hosts need %s (apt-get install iproute2 util-linux openssh-client debootstrap)", strings.Join(missing, ", "))
		prepareEnv = true
		return
	}
	if err := runScript(script, "gc"); err != nil {
		prepareErr = err
		return
	}
	if _, err := outputScript(script, "rootfs"); err != nil {
		// No debootstrap or no reachable mirror: an environment problem.
		prepareErr, prepareEnv = err, true
	}
}

// Hosts creates n test hosts for t, removed when t and its subtests finish.
// Their names are unique to this test process ("srt<pid>-<seq>"), so test
// binaries running in parallel do not collide; hosts left by dead processes
// are removed first.
func Hosts(t testing.TB, n int) []Host {
	t.Helper()
	prepareOnce.Do(prepare)
	if prepareErr != nil {
		if !prepareEnv || os.Getenv("STUDIORUN_REQUIRE_INTEGRATION") == "1" {
			t.Fatalf("sshtest: %v", prepareErr)
		}
		t.Skipf("sshtest: %v", prepareErr)
	}

	keyPath, signer, pubPath := testKey(t)
	hosts := make([]Host, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range hosts {
		h := &hosts[i]
		h.Name = fmt.Sprintf("srt%d-%d", os.Getpid(), seq.Add(1))
		h.Port, h.User, h.KeyPath, h.Signer = 22, "root", keyPath, signer
		h.script, h.dir = script, filepath.Join(StateDir(), h.Name)
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := outputScript(script, "up", h.Name, "auto", pubPath)
			if err != nil {
				errs[i] = err
				return
			}
			f := strings.Fields(out)
			if len(f) != 2 {
				errs[i] = fmt.Errorf("testhosts.sh up %s: unexpected output %q", h.Name, out)
				return
			}
			h.Address = f[1]
			errs[i] = h.readHostKey()
		}()
	}
	wg.Wait()
	t.Cleanup(func() {
		var wg sync.WaitGroup
		for i := range hosts {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := runScript(script, "down", hosts[i].Name); err != nil {
					t.Errorf("sshtest: %v", err)
				}
			}()
		}
		wg.Wait()
	})
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("sshtest: %v", err)
	}
	return hosts
}

// NewKey returns a new ed25519 private key and its signer.
func NewKey(t testing.TB) (ed25519.PrivateKey, ssh.Signer) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return priv, signer
}

// testKey writes a new ed25519 key pair for t's hosts.
func testKey(t testing.TB) (keyPath string, signer ssh.Signer, pubPath string) {
	t.Helper()
	priv, signer := NewKey(t)
	block, err := ssh.MarshalPrivateKey(priv, "studiorun-test")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	keyPath = filepath.Join(dir, "id_ed25519")
	pubPath = keyPath + ".pub"
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pubPath, ssh.MarshalAuthorizedKey(signer.PublicKey()), 0o644); err != nil {
		t.Fatal(err)
	}
	return keyPath, signer, pubPath
}
