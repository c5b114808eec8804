package qemu

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"time"

	"golang.org/x/crypto/ssh"
)

// stepSSH waits until the guest's sshd accepts the builder's credentials
// (notes "waiting for SSH", up to ssh_timeout): on the forwarded port of
// 127.0.0.1 with user-mode networking, on a libvirt network at port 22 of
// the address its DHCP server leased to the VM's MAC, once it has. The
// build VM is a machine this build started a moment ago, whose host key
// nobody can know in advance: its host key is not checked (and is removed
// by stepSeal).
type stepSSH struct{}

func (stepSSH) name() string { return "boot to SSH" }

func (stepSSH) run(ctx context.Context, b *build) error {
	if b.skipSSH {
		return waitExit(ctx, b, time.Duration(b.spec.SSHTimeout))
	}
	cfg, err := b.sshConfig()
	if err != nil {
		return err
	}
	timeout := time.Duration(b.spec.SSHTimeout)
	start := time.Now()
	var lastErr error
	// Reporter.Progress counts bytes: the wait is reported in notes.
	if b.network != nil {
		b.rep.Notef(b.addr, "waiting for a DHCP lease for %s on %s, then SSH (ssh_timeout %s)", b.mac, b.network.Name, timeout)
	}
	leased := false
	lastNote := start
	for {
		elapsed := time.Since(start)
		target, ok, err := b.sshTarget()
		if err != nil {
			return err
		}
		if ok && !leased {
			leased = true
			if b.network != nil {
				b.rep.Notef(b.addr, "the build VM has %s (leased after %s)", target.Addr(), seconds(elapsed))
			}
			b.rep.Notef(b.addr, "waiting for SSH on %s (ssh_timeout %s)", target, timeout)
		}
		if time.Since(lastNote) >= waitNoteEvery {
			lastNote = time.Now()
			what := "SSH"
			if !ok {
				what = "a DHCP lease for " + b.mac
			}
			b.rep.Notef(b.addr, "waiting for %s: %s of %s", what, elapsed.Round(time.Second), timeout)
		}
		if ok {
			client, err := dialSSH(ctx, target.String(), cfg)
			if err == nil {
				b.ssh, b.sshAddr = client, target
				b.rep.Notef(b.addr, "SSH up after %s", seconds(elapsed))
				return nil
			}
			lastErr = err
		} else {
			lastErr = fmt.Errorf("no DHCP lease for %s on network %s yet", b.mac, b.network.Name)
		}
		select {
		case <-b.proc.Done():
			return fmt.Errorf("qemu exited before SSH answered (%v); see the serial log", b.proc.Err())
		default:
		}
		if elapsed > timeout {
			return fmt.Errorf("no SSH on the guest after %s (ssh_timeout): %v", timeout, lastErr)
		}
		if err := sleep(ctx, time.Second); err != nil {
			return err
		}
	}
}

func (stepSSH) cleanup(b *build) {
	if b.ssh != nil {
		_ = b.ssh.Close()
		b.ssh = nil
	}
}

// stepProvision runs the provisioning: the Provisioner runs the tasks
// that the image's provision role declared on its build host, against
// the build VM at the address where stepSSH reached it.
type stepProvision struct{}

func (stepProvision) name() string { return "provision" }

func (stepProvision) run(ctx context.Context, b *build) error {
	if b.skipSSH || len(b.tasks) == 0 {
		return nil
	}
	b.rep.Notef(b.addr, "provisioning %s (%d tasks)", b.spec.ProvisionHost, len(b.tasks))
	if err := b.opts.Provisioner.Provision(ctx, b.spec.ProvisionHost, b.sshAddr.Addr().String(), int(b.sshAddr.Port()), b.rep); err != nil {
		return fmt.Errorf("provision %s: %w", b.spec.ProvisionHost, err)
	}
	return nil
}

func (stepProvision) cleanup(*build) {}

// waitNoteEvery is how often a long wait says it still waits.
const waitNoteEvery = 15 * time.Second

// waitExit waits for qemu to exit by itself (a guest that powers off).
func waitExit(ctx context.Context, b *build, timeout time.Duration) error {
	select {
	case <-b.proc.Done():
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("the guest did not power off within %s", timeout)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// sshConfig is how the builder logs in: ssh_private_key and/or
// ssh_password.
func (b *build) sshConfig() (*ssh.ClientConfig, error) {
	cfg := &ssh.ClientConfig{
		User:            b.spec.SSHUsername,
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), // see stepSSH
		Timeout:         10 * time.Second,
	}
	if b.spec.SSHKey != "" {
		data, err := os.ReadFile(b.resolve(b.spec.SSHKey))
		if err != nil {
			return nil, fmt.Errorf("ssh_private_key: %w", err)
		}
		signer, err := ssh.ParsePrivateKey(data)
		if err != nil {
			return nil, fmt.Errorf("ssh_private_key %s: %w", b.spec.SSHKey, err)
		}
		b.builderKey = bytes.TrimSpace(ssh.MarshalAuthorizedKey(signer.PublicKey()))
		cfg.Auth = append(cfg.Auth, ssh.PublicKeys(signer))
	}
	if b.spec.SSHPassword != nil {
		cfg.Auth = append(cfg.Auth, ssh.Password(b.spec.SSHPassword.Reveal()))
	}
	return cfg, nil
}

// dialSSH connects and logs in, giving up when ctx is done.
func dialSSH(ctx context.Context, addr string, cfg *ssh.ClientConfig) (*ssh.Client, error) {
	d := net.Dialer{Timeout: cfg.Timeout}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	_ = conn.SetDeadline(time.Now().Add(cfg.Timeout))
	// A guest not yet up leaves slirp's forwarded connection hanging
	// until the deadline: a cancel closes it at once.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	c, chans, reqs, err := ssh.NewClientConn(conn, addr, cfg)
	if err != nil {
		conn.Close()
		return nil, err
	}
	_ = conn.SetDeadline(time.Time{})
	return ssh.NewClient(c, chans, reqs), nil
}

// runSSH runs a command on the build VM and returns its combined output.
func runSSH(client *ssh.Client, cmd string) (string, error) {
	sess, err := client.NewSession()
	if err != nil {
		return "", err
	}
	defer sess.Close()
	out, err := sess.CombinedOutput(cmd)
	return string(out), err
}
