package qemu

// The argument lists of qemu-system-x86_64 and qemu-img: pure functions
// of their inputs, tested with tables (args_test.go).

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// userNet is the user-mode (slirp) network the build VM is given. The
// guest reaches the host, and so the build's HTTP server, at Host: slirp
// turns the guest's connections to Host into connections to the host's
// 127.0.0.1. Every address the build uses comes from here, so changing
// Net changes them all.
type userNet struct {
	Net  netip.Prefix
	Host netip.Addr
}

// defaultUserNet is slirp's own default, written out so that qemu is told
// and nothing else assumes it.
var defaultUserNet = mustUserNet("10.0.2.0/24")

// mustUserNet returns the user network on prefix, with the host at its
// second address (as slirp does by default: 10.0.2.2 on 10.0.2.0/24).
func mustUserNet(prefix string) userNet {
	p := netip.MustParsePrefix(prefix)
	return userNet{Net: p, Host: p.Addr().Next().Next()}
}

// netdevArg is the -netdev value: with a bridge, a tap device on it
// that qemu-bridge-helper creates (and that goes when qemu exits); else
// user-mode networking on n, with the guest's SSH port forwarded from
// 127.0.0.1:sshPort.
func netdevArg(c launchConfig) string {
	if c.Bridge != "" {
		return "bridge,id=net0,br=" + c.Bridge
	}
	return fmt.Sprintf("user,id=net0,net=%s,host=%s,hostfwd=tcp:127.0.0.1:%d-:22", c.Net.Net, c.Net.Host, c.SSHPort)
}

// nicArg is the -device value of the build VM's NIC.
func nicArg(c launchConfig) string {
	if c.MAC != "" {
		return "virtio-net-pci,netdev=net0,mac=" + c.MAC
	}
	return "virtio-net-pci,netdev=net0"
}

// launchConfig is what the qemu command line is built from.
type launchConfig struct {
	Name       string
	Accel      string // "kvm" or "tcg"
	Memory     int64  // MiB
	CPUs       int
	Disk       string // qcow2
	CDROM      string // "" when booting from the disk
	SerialLog  string
	QMPSocket  string
	Net        userNet // user-mode networking, when Bridge is ""
	SSHPort    int     // forwarded to the guest's 22 with user-mode networking
	Bridge     string  // the bridge the NIC joins, or ""
	MAC        string  // the NIC's MAC; "" lets qemu pick
	DiskFormat string  // of Disk; "qcow2" when empty
}

// qemuArgs returns qemu-system-x86_64's arguments.
func qemuArgs(c launchConfig) []string {
	format := c.DiskFormat
	if format == "" {
		format = "qcow2"
	}
	args := []string{
		"-name", c.Name,
		"-machine", "pc,accel=" + c.Accel,
	}
	if c.Accel == "kvm" {
		args = append(args, "-cpu", "host")
	}
	args = append(args,
		"-m", strconv.FormatInt(c.Memory, 10),
		"-smp", strconv.Itoa(c.CPUs),
		"-display", "none",
		"-serial", "file:"+c.SerialLog,
		"-qmp", "unix:"+c.QMPSocket+",server=on,wait=off",
		"-netdev", netdevArg(c),
		"-device", nicArg(c),
		// cache=unsafe: the build VM's flushes are not needed, the disk is
		// thrown away unless the guest shuts down cleanly, and qemu
		// flushes everything when it exits.
		"-drive", "file="+c.Disk+",if=virtio,format="+format+",cache=unsafe,discard=unmap",
	)
	if c.CDROM != "" {
		// Boot the installer once; its reboot boots the installed disk.
		args = append(args, "-drive", "file="+c.CDROM+",media=cdrom,readonly=on", "-boot", "order=c,once=d")
	} else {
		args = append(args, "-boot", "order=c")
	}
	return args
}

// createArgs returns qemu-img's arguments that create the working disk:
// an empty qcow2 of sizeMiB, or, with a base, a qcow2 overlay on it of
// sizeMiB (the base's own size when sizeMiB is 0).
func createArgs(disk string, sizeMiB int64, base, baseFormat string) []string {
	args := []string{"create", "-q", "-f", "qcow2"}
	if base != "" {
		args = append(args, "-b", base, "-F", baseFormat)
	}
	args = append(args, disk)
	if sizeMiB > 0 {
		args = append(args, strconv.FormatInt(sizeMiB, 10)+"M")
	}
	return args
}

// convertArgs returns qemu-img's arguments that write the final image:
// the working disk, flattened (an overlay's base included), in format,
// compressed when asked.
func convertArgs(src, dst, format string, compress bool) []string {
	args := []string{"convert", "-p", "-O", format}
	if compress {
		args = append(args, "-c")
	}
	return append(args, src, dst)
}

// parseImgProgress reads the last "(12.34/100%)" of qemu-img -p output as
// hundredths of a percent.
func parseImgProgress(s string) (int64, bool) {
	i := strings.LastIndex(s, "(")
	j := strings.LastIndex(s, "/100%)")
	if i < 0 || j < i {
		return 0, false
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(s[i+1:j]), 64)
	if err != nil {
		return 0, false
	}
	return int64(f * 100), true
}
