package qemu

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/digitalocean/go-qemu/qmp"
)

// stepLaunch picks the accelerator, starts qemu-system-x86_64 (no display,
// the serial console logged to serial.log in the build folder, a QMP
// socket, and the network of stepNetwork: user-mode networking with the
// guest's SSH port forwarded from a free port of 127.0.0.1, or a tap
// device on the libvirt network's bridge) and connects to QMP. The
// cleanup stops qemu: QMP quit, then a kill.
//
// The tap device is qemu-bridge-helper's (-netdev bridge): the helper
// creates it, adds it to the bridge and hands qemu its file descriptor,
// and the kernel removes it when qemu exits, however qemu ends (killed
// too), so no tap can outlive a build. The helper only adds taps to
// bridges that /etc/qemu/bridge.conf allows ("allow virbr1").
type stepLaunch struct {
	sockDir string
	stderr  lockedBuffer
}

func (*stepLaunch) name() string { return "launch qemu" }

func (s *stepLaunch) run(ctx context.Context, b *build) error {
	accel, notice, err := chooseAccel(b.spec.Accelerator, b.kvmStatus(ctx))
	if err != nil {
		return err
	}
	if notice != "" {
		b.rep.Notef(b.addr, "%s", notice)
	}
	b.accel = accel
	where := ""
	if b.network != nil {
		where = fmt.Sprintf("on libvirt network %s (bridge %s, MAC %s)", b.network.Name, b.network.Bridge, b.mac)
	} else {
		if b.sshPort, err = freePort(); err != nil {
			return err
		}
		where = fmt.Sprintf("SSH forwarded from 127.0.0.1:%d", b.sshPort)
	}
	// A unix socket path is limited to 108 bytes: the QMP socket lives in
	// a short temporary folder rather than in the build folder.
	if s.sockDir, err = os.MkdirTemp("", "studiorun-qmp-"); err != nil {
		return err
	}
	sock := filepath.Join(s.sockDir, "qmp.sock")
	args := qemuArgs(launchConfig{
		Name: b.name, Accel: accel, Memory: int64(b.spec.Memory), CPUs: b.spec.CPUs,
		Disk: b.disk, CDROM: b.cdrom, SerialLog: filepath.Join(b.tmpDir, "serial.log"),
		QMPSocket: sock, Net: b.net, SSHPort: b.sshPort, Bridge: b.bridge(), MAC: b.mac,
	})
	b.rep.Notef(b.addr, "starting qemu (%s, %d MiB, %d CPUs), %s", accel, b.spec.Memory, b.spec.CPUs, where)
	if b.proc, err = b.tools.Start(args, &s.stderr); err != nil {
		return err
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		mon, err := qmp.NewSocketMonitor("unix", sock, 2*time.Second)
		if err == nil {
			if err = mon.Connect(); err == nil {
				b.qmp = mon
				return nil
			}
		}
		select {
		case <-b.proc.Done():
			return fmt.Errorf("qemu exited: %v: %s%s", b.proc.Err(), s.qemuStderr(), bridgeHint(s.qemuStderr(), b.bridge()))
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no QMP on %s after 10s: %v", sock, err)
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
}

func (s *stepLaunch) cleanup(b *build) {
	if b.qmp != nil {
		if b.proc != nil {
			select {
			case <-b.proc.Done():
			default:
				_, _ = b.qmp.Run([]byte(`{"execute":"quit"}`))
			}
		}
		_ = b.qmp.Disconnect()
		b.qmp = nil
	}
	if b.proc != nil {
		select {
		case <-b.proc.Done():
		case <-time.After(2 * time.Second):
		}
		b.proc.Kill()
	}
	if s.sockDir != "" {
		os.RemoveAll(s.sockDir)
	}
}

// bridge is the bridge the VM's NIC joins, "" with user-mode networking.
func (b *build) bridge() string {
	if b.network == nil {
		return ""
	}
	return b.network.Bridge
}

// bridgeHint says how to let qemu-bridge-helper use the bridge when qemu
// says it refused.
func bridgeHint(stderr, bridge string) string {
	if bridge == "" || !strings.Contains(stderr, "access denied by acl file") {
		return ""
	}
	return fmt.Sprintf(" (qemu-bridge-helper adds taps only to the bridges /etc/qemu/bridge.conf allows: add the line \"allow %s\" to it)", bridge)
}

// qemuStderr is qemu's standard error so far, for error messages.
func (s *stepLaunch) qemuStderr() string { return strings.TrimSpace(s.stderr.String()) }

// freePort returns a TCP port of 127.0.0.1 that is free now.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// lockedBuffer is a bytes.Buffer written by one goroutine and read by
// another.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}
