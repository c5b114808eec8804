package qemu

// The image build as a sequence of steps, Packer's multistep without its
// state bag: each step_*.go holds one step, whose run fills the typed
// build it is given and whose cleanup undoes what run did (stops a
// server, kills qemu, removes a temporary file). The cleanups of every
// step that started run in reverse order, whether the build succeeded,
// failed or was cancelled.

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/digitalocean/go-qemu/qmp"
	"golang.org/x/crypto/ssh"

	"github.com/studiorun/studiorun/builtins/internal/kvm"
	"github.com/studiorun/studiorun/builtins/libvirt"
	"github.com/studiorun/studiorun/runtime"
	"github.com/studiorun/studiorun/runtime/apply"
)

// step is one stage of an image build.
type step interface {
	// name says what the step does, for errors: "launch qemu".
	name() string
	// run does the step; it returns promptly when ctx is cancelled.
	run(ctx context.Context, b *build) error
	// cleanup undoes what run did that must not outlive the build; it is
	// called even when run failed part way.
	cleanup(b *build)
}

// build is what the steps of one image build share.
type build struct {
	addr     runtime.Address
	name     string
	spec     *Image
	root     string // the project root
	rep      apply.Reporter
	tools    Tools
	opts     *Options
	probeKVM func(context.Context) kvm.Status // probes KVM, once per driver

	// Set by stepOutput.
	outDir string // the absolute output_dir
	tmpDir string // the build folder beside it, removed at the end
	final  string // outDir/OutputFile
	// Set by stepSource.
	disk       string // the working disk qemu writes, qcow2
	cdrom      string // source "iso": the verified ISO
	sourceHash map[string]string
	// Set by stepNetwork.
	net      userNet             // user-mode networking, when network is nil
	network  *libvirt.Attachment // the libvirt network the VM joins, or nil
	mac      string              // the VM's MAC on network
	hostAddr netip.Addr          // where the guest reaches the host (the HTTP server)
	// Set by stepHTTP.
	httpPort int // 0: no HTTP server
	// Set by stepLaunch.
	accel   string
	sshPort int
	proc    Process
	qmp     *qmp.SocketMonitor
	// tasks are the provisioning tasks (without their host).
	tasks []*runtime.Resource
	// Set by stepSSH.
	ssh        *ssh.Client
	sshAddr    netip.AddrPort // where sshd answered
	builderKey []byte         // the authorized_keys line of ssh_private_key
	// Set by stepConvert.
	output string // the converted image in tmpDir
	// Set by stepManifest.
	manifestPath string
	inputs       *inputs
	started      time.Time
	// timings are the durations of the steps that succeeded, in order.
	timings []stepTiming
	// cancelled is set, before the cleanups run, when the build was
	// cancelled (Ctrl-C) rather than failed.
	cancelled bool
	// skipSSH ends the build's guest part when qemu exits by itself: an
	// installer that powers off (the test ISO) and has nothing to
	// provision over SSH. Scripts cannot set it.
	skipSSH bool
}

// runSteps runs the steps in order until one fails or ctx is cancelled,
// then the cleanups of every step that started, in reverse. Each step
// that succeeds reports its duration ("boot to SSH 19.4s") and is added
// to b.timings.
func runSteps(ctx context.Context, b *build, steps []step) (err error) {
	started := 0
	defer func() {
		b.cancelled = ctx.Err() != nil
		for i := started - 1; i >= 0; i-- {
			steps[i].cleanup(b)
		}
	}()
	for _, s := range steps {
		if cerr := ctx.Err(); cerr != nil {
			return fmt.Errorf("build cancelled before %s: %w", s.name(), cerr)
		}
		started++
		start := time.Now()
		if err := s.run(ctx, b); err != nil {
			if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
				err = fmt.Errorf("%w (%w)", err, cerr)
			}
			return fmt.Errorf("%s: %w (after %s)", s.name(), err, seconds(time.Since(start)))
		}
		t := stepTiming{step: s.name(), took: time.Since(start)}
		b.timings = append(b.timings, t)
		b.rep.Notef(b.addr, "%s", t)
	}
	return nil
}

// stepTiming is how long one step of a build took.
type stepTiming struct {
	step string
	took time.Duration
}

// String is "boot to SSH 19.4s": the line each step reports as it ends.
func (t stepTiming) String() string { return t.step + " " + seconds(t.took) }

// seconds formats a duration as seconds with one decimal, "19.4s", the
// form of every duration a build reports (scripts read them).
func seconds(d time.Duration) string { return fmt.Sprintf("%.1fs", d.Seconds()) }

// breakdown is the build's one-line summary: the steps' durations, in
// order, "launch qemu 0.2s, boot to SSH 19.4s, ...".
func breakdown(timings []stepTiming) string {
	parts := make([]string, len(timings))
	for i, t := range timings {
		parts[i] = t.String()
	}
	return strings.Join(parts, ", ")
}

// sleep waits d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
