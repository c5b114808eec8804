package qemu

import (
	"context"
	"fmt"
	"time"
)

// stepShutdown powers the guest off gracefully: shutdown_command over SSH
// (with sudo when the SSH user is not root), or, when that cannot be
// sent, an ACPI power button press through QMP (system_powerdown). A
// guest still running after shutdown_timeout is killed and the build
// fails: an image whose file systems were not unmounted is not published.
type stepShutdown struct{}

func (stepShutdown) name() string { return "shut down" }

func (stepShutdown) run(ctx context.Context, b *build) error {
	if b.skipSSH {
		return nil // the guest powered itself off
	}
	timeout := time.Duration(b.spec.ShutdownTimeout)
	how := "shutdown_command"
	if err := sendShutdown(b); err != nil {
		b.rep.Notef(b.addr, "shutdown_command over SSH failed (%v): pressing the ACPI power button", err)
		how = "ACPI power button"
		if _, err := b.qmp.Run([]byte(`{"execute":"system_powerdown"}`)); err != nil {
			return fmt.Errorf("system_powerdown: %w", err)
		}
	}
	start := time.Now()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-b.proc.Done():
			b.rep.Notef(b.addr, "powered off (%s) in %s", how, time.Since(start).Round(100*time.Millisecond))
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
			if el := time.Since(start); el >= waitNoteEvery && el%waitNoteEvery < time.Second {
				b.rep.Notef(b.addr, "waiting for the guest to power off: %s of %s", el.Round(time.Second), timeout)
			}
			if time.Since(start) > timeout {
				b.proc.Kill()
				return fmt.Errorf("the guest did not power off within %s (shutdown_timeout) after the %s: killed it; the image is not kept", timeout, how)
			}
		}
	}
}

// sendShutdown starts shutdown_command over SSH. The connection may drop
// as the guest goes down: only a command that could not be started, or
// that exited with an error at once, counts as a failure.
func sendShutdown(b *build) error {
	if b.ssh == nil {
		return fmt.Errorf("no SSH connection")
	}
	sess, err := b.ssh.NewSession()
	if err != nil {
		return err
	}
	cmd := b.spec.ShutdownCommand
	if b.spec.SSHUsername != "root" {
		cmd = "sudo -n " + cmd
	}
	if err := sess.Start(cmd); err != nil {
		sess.Close()
		return err
	}
	done := make(chan error, 1)
	go func() { done <- sess.Wait(); sess.Close() }()
	select {
	case err := <-done:
		if err != nil && isExitError(err) {
			return err
		}
	case <-time.After(2 * time.Second):
	}
	return nil
}

func (stepShutdown) cleanup(*build) {}
