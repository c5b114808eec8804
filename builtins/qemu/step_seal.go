package qemu

import (
	"context"
	"fmt"
	"strings"
)

// stepSeal makes the image a template, so that its clones do not share
// identities: it empties /etc/machine-id (systemd makes a new one at the
// clone's first boot, and DHCP client ids derive from it), removes the SSH
// host keys (Debian's and EL's images regenerate missing ones at boot:
// sshd-keygen on EL, ssh-keygen -A in the Debian base image's unit),
// removes DHCP leases, and removes the builder's key from the SSH user's
// authorized_keys.
//
// It runs as shell commands over the builder's SSH connection, just
// before the shutdown: that needs nothing on the host (virt-customize
// brings libguestfs and a supermin appliance; qemu-nbd needs the nbd
// module and root) and works for any guest with a POSIX shell, whatever
// its file system. The connection already open survives the removal of
// the key and the host keys.
type stepSeal struct{}

func (stepSeal) name() string { return "seal the image" }

func (stepSeal) run(_ context.Context, b *build) error {
	if b.ssh == nil {
		return nil
	}
	script := sealScript(b.spec.SSHUsername, authorizedKeyBlob(string(b.builderKey)))
	if out, err := runSSH(b.ssh, script); err != nil {
		return fmt.Errorf("%w: %s", err, strings.TrimSpace(out))
	}
	b.rep.Notef(b.addr, "sealed: machine-id emptied, SSH host keys, DHCP leases and the builder's key removed")
	return nil
}

func (stepSeal) cleanup(*build) {}

// authorizedKeyBlob returns the base64 part of an authorized_keys line
// ("ssh-ed25519 AAAA... comment"), which identifies the key whatever the
// options and comment around it.
func authorizedKeyBlob(line string) string {
	f := strings.Fields(line)
	if len(f) < 2 {
		return ""
	}
	return f[1]
}

// sealScript is the shell script that seals the guest, run as user (with
// sudo when user is not root). keyBlob is the builder's public key's
// base64 part, removed from user's authorized_keys ("" for none).
func sealScript(user, keyBlob string) string {
	var s strings.Builder
	s.WriteString("set -e\n")
	s.WriteString(": > /etc/machine-id\n")
	s.WriteString("rm -f /var/lib/dbus/machine-id /etc/ssh/ssh_host_*_key /etc/ssh/ssh_host_*_key.pub\n")
	s.WriteString("rm -f /var/lib/dhcp/*.leases /var/lib/dhclient/*.lease* /var/lib/NetworkManager/*.lease /var/lib/systemd/network/*.lease\n")
	if keyBlob != "" {
		f := "~" + user + "/.ssh/authorized_keys"
		fmt.Fprintf(&s, "f=%s\nif [ -f \"$f\" ]; then grep -vF %s \"$f\" > \"$f.seal\" || true; cat \"$f.seal\" > \"$f\"; rm -f \"$f.seal\"; fi\n", f, shellQuote(keyBlob))
	}
	s.WriteString("sync\n")
	if user == "root" {
		return s.String()
	}
	return "sudo -n sh -c " + shellQuote(s.String())
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
