package qemu

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/netip"

	"github.com/studiorun/studiorun/builtins/libvirt"
)

// localLibvirt is the libvirtd whose networks a build VM joins: the VM
// runs on this machine, so its network is this machine's system libvirt.
const localLibvirt = "qemu:///system"

// stepNetwork decides the build VM's network. Without network, it is
// user-mode networking (slirp): the guest reaches the host at b.net.Host
// and its SSH port is forwarded from 127.0.0.1 (see stepLaunch). With
// network, the VM's NIC, with a new locally administered MAC, joins the
// libvirt network's bridge (through qemu-bridge-helper, see stepLaunch);
// the guest reaches the host at the host's address on the network, and
// its own address is the one the network's DHCP server leases to its MAC
// (see stepSSH). The cleanup closes the libvirt connection.
type stepNetwork struct{}

func (stepNetwork) name() string { return "join the network" }

func (stepNetwork) run(_ context.Context, b *build) error {
	if b.spec.Network == "" {
		b.net = defaultUserNet
		b.hostAddr = b.net.Host
		return nil
	}
	att, err := libvirt.AttachNetwork(localLibvirt, b.spec.Network)
	if err != nil {
		return err
	}
	b.network = att
	if b.mac, err = randomLAA(); err != nil {
		return err
	}
	b.hostAddr = att.Host.Addr()
	b.rep.Notef(b.addr, "joining libvirt network %s (bridge %s, host %s) with MAC %s", att.Name, att.Bridge, att.Host, b.mac)
	return nil
}

func (stepNetwork) cleanup(b *build) {
	if b.network != nil {
		if err := b.network.Close(); err != nil {
			b.rep.Notef(b.addr, "%v", err)
		}
		b.network = nil
	}
}

// randomLAA returns a random unicast, locally administered MAC address
// ("02:..." with the five other bytes random).
func randomLAA() (string, error) {
	var m [6]byte
	if _, err := rand.Read(m[1:]); err != nil {
		return "", fmt.Errorf("generate a MAC address: %w", err)
	}
	m[0] = 0x02
	return fmt.Sprintf("%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5]), nil
}

// sshTarget is where the builder reaches the guest's sshd: the forwarded
// port of 127.0.0.1 with user-mode networking, else port 22 of the
// address leased to the VM's MAC, or false while there is none.
func (b *build) sshTarget() (netip.AddrPort, bool, error) {
	if b.network == nil {
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(b.sshPort)), true, nil
	}
	ip, ok, err := b.network.Lease(b.mac)
	return netip.AddrPortFrom(ip, 22), ok, err
}
