package libvirt_test

import (
	"context"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/studiorun/studiorun/builtins/libvirt"
	"github.com/studiorun/studiorun/builtins/ssh/sshtest"
	"github.com/studiorun/studiorun/runtime/apply"
)

// sshForwarder is a minimal SSH server for the test: it accepts one
// client key and forwards direct-streamlocal channels (what a qemu+ssh
// client opens to reach libvirtd's socket) to local unix sockets. It
// speaks the real SSH protocol through golang.org/x/crypto/ssh, so the
// driver's client side (host key check, key auth, socket forwarding) runs
// as against OpenSSH's sshd.
type sshForwarder struct {
	addr    string
	hostKey ssh.PublicKey
	ln      net.Listener
}

func startSSHForwarder(t *testing.T, clientKey ssh.PublicKey) *sshForwarder {
	t.Helper()
	_, signer := sshtest.NewKey(t)
	cfg := &ssh.ServerConfig{PublicKeyCallback: func(_ ssh.ConnMetadata, k ssh.PublicKey) (*ssh.Permissions, error) {
		if string(k.Marshal()) == string(clientKey.Marshal()) {
			return &ssh.Permissions{}, nil
		}
		return nil, fmt.Errorf("unknown key")
	}}
	cfg.AddHostKey(signer)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go serveSSH(c, cfg)
		}
	}()
	return &sshForwarder{addr: ln.Addr().String(), hostKey: signer.PublicKey(), ln: ln}
}

func serveSSH(c net.Conn, cfg *ssh.ServerConfig) {
	conn, chans, reqs, err := ssh.NewServerConn(c, cfg)
	if err != nil {
		c.Close()
		return
	}
	defer conn.Close()
	go ssh.DiscardRequests(reqs)
	for nc := range chans {
		if nc.ChannelType() != "direct-streamlocal@openssh.com" {
			nc.Reject(ssh.UnknownChannelType, "only direct-streamlocal")
			continue
		}
		var msg struct {
			SocketPath string
			Reserved0  string
			Reserved1  uint32
		}
		if err := ssh.Unmarshal(nc.ExtraData(), &msg); err != nil {
			nc.Reject(ssh.ConnectionFailed, err.Error())
			continue
		}
		local, err := net.Dial("unix", msg.SocketPath)
		if err != nil {
			nc.Reject(ssh.ConnectionFailed, err.Error())
			continue
		}
		ch, chReqs, err := nc.Accept()
		if err != nil {
			local.Close()
			continue
		}
		go ssh.DiscardRequests(chReqs)
		go func() {
			io.Copy(ch, local)
			ch.CloseWrite()
		}()
		go func() {
			io.Copy(local, ch)
			local.Close()
		}()
	}
}

// sshHome makes a home directory with a client key in ~/.ssh and, when
// known is set, the forwarder's host key in ~/.ssh/known_hosts.
func sshHome(t *testing.T) (home string, pub ssh.PublicKey) {
	t.Helper()
	home = t.TempDir()
	priv, signer := sshtest.NewKey(t)
	block, err := ssh.MarshalPrivateKey(priv, "studiorun test")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(home, ".ssh"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(home, ".ssh", "id_ed25519"), pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	return home, signer.PublicKey()
}

func TestSSHURIConnectsThroughSSH(t *testing.T) {
	needLibvirt(t)
	home, pub := sshHome(t)
	fwd := startSSHForwarder(t, pub)
	t.Setenv("HOME", home)
	t.Setenv("SSH_AUTH_SOCK", "")
	host, port, _ := net.SplitHostPort(fwd.addr)
	uri := fmt.Sprintf("test+ssh://root@%s:%s/default?socket=%s", host, port, libvirtSocket)
	plan := evalScript(t, t.TempDir(), `libvirt.existing_network("default")`)

	t.Run("an unknown host key is refused", func(t *testing.T) {
		if err := os.WriteFile(filepath.Join(home, ".ssh", "known_hosts"), nil, 0o600); err != nil {
			t.Fatal(err)
		}
		d := libvirt.NewDriver(uri, home)
		defer d.Close()
		_, err := d.Diff(context.Background(), plan.Resources[0], nil)
		if err == nil || !strings.Contains(err.Error(), "connect to libvirt at "+uri) || !strings.Contains(err.Error(), "knownhosts: key is unknown") {
			t.Errorf("diff = %v, want the unknown host key refused", err)
		}
	})

	t.Run("a known host key and the key in ~/.ssh connect", func(t *testing.T) {
		line := knownhosts.Line([]string{knownhosts.Normalize(fwd.addr)}, fwd.hostKey)
		if err := os.WriteFile(filepath.Join(home, ".ssh", "known_hosts"), []byte(line+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		d := libvirt.NewDriver(uri, home)
		defer d.Close()
		c, err := d.Diff(context.Background(), plan.Resources[0], nil)
		if err != nil || c.Action != apply.NoOp {
			t.Fatalf("diff over ssh = %v, %v; want no-op", c, err)
		}
	})
}
