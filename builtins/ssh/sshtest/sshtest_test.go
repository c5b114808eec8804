package sshtest

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

func run(t *testing.T, c *ssh.Client, cmd string) string {
	t.Helper()
	s, err := c.NewSession()
	if err != nil {
		t.Fatalf("session: %v", err)
	}
	defer s.Close()
	out, err := s.CombinedOutput(cmd)
	if err != nil {
		t.Fatalf("%q: %v: %s", cmd, err, out)
	}
	return strings.TrimSpace(string(out))
}

func dial(t *testing.T, h *Host) *ssh.Client {
	t.Helper()
	c, err := ssh.Dial("tcp", h.Addr(), h.ClientConfig())
	if err != nil {
		t.Fatalf("dial %s (%s): %v", h.Name, h.Addr(), err)
	}
	return c
}

func mustExec(t *testing.T, h *Host, cmd string) string {
	t.Helper()
	out, err := h.Exec(cmd)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(out)
}

func TestHosts(t *testing.T) {
	var names, pids []string
	t.Run("hosts", func(t *testing.T) {
		hosts := Hosts(t, 3)
		seen := map[string]bool{}
		for i := range hosts {
			h := &hosts[i]
			names = append(names, h.Name)
			pid, err := h.initPid()
			if err != nil {
				t.Fatal(err)
			}
			pids = append(pids, pid)
			if seen[h.Address] {
				t.Fatalf("address %s given twice", h.Address)
			}
			seen[h.Address] = true

			// Reachable from this machine with the test key; the host key
			// is the one Host reports (ClientConfig accepts only it).
			c := dial(t, h)
			if got := run(t, c, "hostname"); got != h.Name {
				t.Errorf("hostname on %s = %q", h.Name, got)
			}
			if got := run(t, c, "id -u"); got != "0" {
				t.Errorf("id -u on %s = %q", h.Name, got)
			}
			if got := run(t, c, "ip -4 -o addr show dev eth0"); !strings.Contains(got, " "+h.Address+"/24 ") {
				t.Errorf("eth0 of %s: %q, want %s", h.Name, got, h.Address)
			}
			run(t, c, "sudo -n true && test -x /usr/lib/openssh/sftp-server")
			c.Close()

			// And through a known_hosts file holding KnownHostsLine.
			kh := filepath.Join(t.TempDir(), "known_hosts")
			if err := os.WriteFile(kh, []byte(h.KnownHostsLine+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			cb, err := knownhosts.New(kh)
			if err != nil {
				t.Fatal(err)
			}
			cfg := h.ClientConfig()
			cfg.HostKeyCallback = cb
			c2, err := ssh.Dial("tcp", h.Addr(), cfg)
			if err != nil {
				t.Fatalf("dial %s with known_hosts: %v", h.Name, err)
			}
			c2.Close()
		}
		for i := range hosts {
			for j := i + 1; j < len(hosts); j++ {
				if bytes.Equal(hosts[i].HostKey.Marshal(), hosts[j].HostKey.Marshal()) {
					t.Errorf("%s and %s share a host key", hosts[i].Name, hosts[j].Name)
				}
			}
		}

		// Each host has its own /etc: a user made on one is absent on the
		// others, and is seen over SSH on its own host.
		mustExec(t, &hosts[0], "useradd -m -s /bin/sh alice")
		c := dial(t, &hosts[0])
		if got := run(t, c, "getent passwd alice | cut -d: -f6"); got != "/home/alice" {
			t.Errorf("alice on %s over SSH: %q", hosts[0].Name, got)
		}
		c.Close()
		for _, h := range hosts[1:] {
			if out, err := h.Exec("getent passwd alice"); err == nil {
				t.Errorf("alice exists on %s: %q", h.Name, out)
			}
		}

		// become: a user with the test key and sudo without a password.
		mustExec(t, &hosts[0], `mkdir -p /home/alice/.ssh && cp /root/.ssh/authorized_keys /home/alice/.ssh/ &&
			chown -R alice: /home/alice/.ssh && echo 'alice ALL=(ALL) NOPASSWD:ALL' >/etc/sudoers.d/alice &&
			chmod 440 /etc/sudoers.d/alice`)
		cfg := hosts[0].ClientConfig()
		cfg.User = "alice"
		c, err := ssh.Dial("tcp", hosts[0].Addr(), cfg)
		if err != nil {
			t.Fatalf("dial %s as alice: %v", hosts[0].Name, err)
		}
		if got := run(t, c, "id -un; sudo -n id -u"); got != "alice\n0" {
			t.Errorf("alice with sudo on %s: %q", hosts[0].Name, got)
		}
		c.Close()

		// A mount inside a host stays inside it.
		mustExec(t, &hosts[1], "mkdir -p /vfx && mount -t tmpfs tmpfs /vfx && touch /vfx/x")
		if got := mustExec(t, &hosts[1], "grep -c ' /vfx tmpfs ' /proc/mounts"); got != "1" {
			t.Errorf("mount in %s: %q", hosts[1].Name, got)
		}
		if b, _ := os.ReadFile("/proc/self/mountinfo"); bytes.Contains(b, []byte(StateDir())) || bytes.Contains(b, []byte("/vfx")) {
			t.Errorf("a test host's mount shows on this machine:\n%s", b)
		}
		if out, err := hosts[2].Exec("test -e /vfx/x"); err == nil {
			t.Errorf("%s sees %s's mount: %q", hosts[2].Name, hosts[1].Name, out)
		}

		// Stop: an open connection drops, a new one is refused; Start
		// brings it back.
		h := &hosts[2]
		c = dial(t, h)
		if err := h.Stop(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- c.Wait() }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Errorf("connection to stopped %s still open", h.Name)
		}
		c.Close()
		if c, err := ssh.Dial("tcp", h.Addr(), h.ClientConfig()); err == nil {
			c.Close()
			t.Errorf("stopped %s still accepts SSH", h.Name)
		}
		if err := h.Start(); err != nil {
			t.Fatal(err)
		}
		dial(t, h).Close()

		// ChangeHostKey: the old key is refused, the new one accepted.
		h = &hosts[0]
		oldLine := h.KnownHostsLine
		oldCfg := h.ClientConfig()
		if err := h.ChangeHostKey(); err != nil {
			t.Fatal(err)
		}
		if oldLine == h.KnownHostsLine {
			t.Fatalf("host key of %s did not change", h.Name)
		}
		if c, err := ssh.Dial("tcp", h.Addr(), oldCfg); err == nil {
			c.Close()
			t.Errorf("%s still presents its old host key", h.Name)
		}
		kh := filepath.Join(t.TempDir(), "known_hosts")
		if err := os.WriteFile(kh, []byte(oldLine+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		cb, err := knownhosts.New(kh)
		if err != nil {
			t.Fatal(err)
		}
		cfg = h.ClientConfig()
		cfg.HostKeyCallback = cb
		_, err = ssh.Dial("tcp", h.Addr(), cfg)
		var ke *knownhosts.KeyError
		if !errors.As(err, &ke) || len(ke.Want) == 0 {
			t.Errorf("dial %s with its old known_hosts line: %v, want a changed-key error", h.Name, err)
		}
		c = dial(t, h)
		if got := run(t, c, "getent passwd alice | cut -d: -f1"); got != "alice" {
			t.Errorf("%s lost its files on rekey: %q", h.Name, got)
		}
		c.Close()
	})
	if len(names) != 3 {
		return
	}

	// Cleanup removed the namespaces, the processes and the state.
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns list: %v: %s", err, out)
	}
	for _, n := range names {
		if strings.Contains(string(out), n) {
			t.Errorf("netns %s left: %s", n, out)
		}
		if _, err := os.Stat(filepath.Join(StateDir(), n)); err == nil {
			t.Errorf("state of %s left", n)
		}
	}
	for _, p := range pids {
		if b, err := os.ReadFile("/proc/" + p + "/stat"); err == nil && !strings.Contains(string(b), ") Z ") {
			t.Errorf("init %s of a removed host still runs: %s", p, b)
		}
	}
	b, err := os.ReadFile("/proc/mounts")
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b, []byte(StateDir())) {
		t.Errorf("mounts of test hosts left:\n%s", b)
	}
}

// TestTenHosts measures what issue 4's benchmark needs: 10 hosts up, each
// answering SSH, and down.
func TestTenHosts(t *testing.T) {
	var down time.Time
	t.Run("up", func(t *testing.T) {
		start := time.Now()
		hosts := Hosts(t, 10)
		up := time.Since(start)
		for i := range hosts {
			dial(t, &hosts[i]).Close()
		}
		t.Logf("10 hosts up in %v, answering SSH after %v", up.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
		t.Cleanup(func() { down = time.Now() })
	})
	if !down.IsZero() {
		t.Logf("10 hosts down in %v", time.Since(down).Round(time.Millisecond))
	}
}
