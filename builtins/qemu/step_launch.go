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
// socket, user-mode networking with the guest's SSH port forwarded from a
// free port of 127.0.0.1) and connects to QMP. The cleanup stops qemu:
// QMP quit, then a kill.
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
	if b.sshPort, err = freePort(); err != nil {
		return err
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
		QMPSocket: sock, Net: b.net, SSHPort: b.sshPort,
	})
	b.rep.Notef(b.addr, "starting qemu (%s, %d MiB, %d CPUs), SSH forwarded from 127.0.0.1:%d", accel, b.spec.Memory, b.spec.CPUs, b.sshPort)
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
			return fmt.Errorf("qemu exited: %v: %s", b.proc.Err(), strings.TrimSpace(s.stderr.String()))
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
