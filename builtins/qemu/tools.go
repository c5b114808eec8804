package qemu

// Tools stands in front of the qemu-system-x86_64 and qemu-img processes,
// as Packer's qemu Driver does, so that the steps are tested without
// them; the argument lists come from pure functions (args.go).

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"sync"
	"syscall"
)

// Tools runs qemu's programs.
type Tools interface {
	// Img runs qemu-img and returns its standard output; out, when not
	// nil, receives the output as it comes (qemu-img -p progress).
	Img(ctx context.Context, out io.Writer, args ...string) ([]byte, error)
	// Start starts qemu-system-x86_64; its standard error goes to stderr.
	Start(args []string, stderr io.Writer) (Process, error)
	// Version returns qemu-system-x86_64's version, "QEMU emulator version 7.2.x".
	Version(ctx context.Context) (string, error)
}

// Process is a started qemu.
type Process interface {
	// Done is closed when the process has exited.
	Done() <-chan struct{}
	// Err is the exit status, once Done is closed.
	Err() error
	// Kill kills the process and waits for it to exit.
	Kill()
}

// execTools runs the programs found on $PATH (or the paths given).
type execTools struct {
	system, img string
	version     struct {
		once sync.Once
		v    string
		err  error
	}
}

func newExecTools(system, img string) *execTools {
	if system == "" {
		system = "qemu-system-x86_64"
	}
	if img == "" {
		img = "qemu-img"
	}
	return &execTools{system: system, img: img}
}

func (t *execTools) Img(ctx context.Context, out io.Writer, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, t.img, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	if out != nil {
		cmd.Stdout = io.MultiWriter(&stdout, out)
	}
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("%s %s: %w: %s", t.img, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

func (t *execTools) Start(args []string, stderr io.Writer) (Process, error) {
	cmd := exec.Command(t.system, args...)
	cmd.Stderr = stderr
	// Its own process group: a Ctrl-C in the terminal reaches studiorun,
	// which decides (the engine may let a running build finish), not qemu.
	// Pdeathsig: a studiorun killed with SIGKILL takes its qemu along.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", t.system, err)
	}
	p := &execProcess{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

func (t *execTools) Version(ctx context.Context) (string, error) {
	t.version.once.Do(func() {
		out, err := exec.CommandContext(ctx, t.system, "-version").Output()
		if err != nil {
			t.version.err = fmt.Errorf("%s -version: %w", t.system, err)
			return
		}
		t.version.v, _, _ = strings.Cut(strings.TrimSpace(string(out)), "\n")
	})
	return t.version.v, t.version.err
}

type execProcess struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

func (p *execProcess) Done() <-chan struct{} { return p.done }
func (p *execProcess) Err() error            { return p.err }
func (p *execProcess) Kill() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}
