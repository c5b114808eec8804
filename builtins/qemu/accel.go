package qemu

// The accelerator: KVM when it works, else software emulation (TCG).
// /dev/kvm opening is not enough: under a hypervisor without working
// nested virtualisation /dev/kvm exists, KVM_GET_API_VERSION answers, and
// even a guest that only runs real-mode code works, yet the firmware
// stops with "KVM internal error" (or qemu aborts setting an MSR with
// -cpu host) as soon as it runs protected-mode code. So the probe starts
// the build's own machine type and CPU under KVM with no disk, lets its
// firmware run for a second and asks QMP whether it still runs.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// kvmProbeTimeout bounds the probe: a working KVM answers in well under
// a second.
const kvmProbeTimeout = 3 * time.Second

// kvmStatus is the probe's verdict.
type kvmStatus struct {
	OK     bool
	Reason string // why not, when !OK
}

// chooseAccel picks the accelerator for the requested one ("auto", "kvm",
// "tcg") given the probe; notice is set when "auto" falls back.
func chooseAccel(requested string, kvm kvmStatus) (accel, notice string, err error) {
	switch requested {
	case "tcg":
		return "tcg", "", nil
	case "kvm":
		if !kvm.OK {
			return "", "", fmt.Errorf("accelerator \"kvm\": KVM does not work here (%s): use accelerator = \"auto\" to fall back to software emulation, or \"tcg\"", kvm.Reason)
		}
		return "kvm", "", nil
	case "auto", "":
		if !kvm.OK {
			return "tcg", fmt.Sprintf("KVM does not work here (%s): building under software emulation (TCG), several times slower", kvm.Reason), nil
		}
		return "kvm", "", nil
	}
	return "", "", fmt.Errorf("accelerator %q: want \"auto\", \"kvm\" or \"tcg\"", requested)
}

// kvmAPIVersion is the only KVM API version there is (KVM_GET_API_VERSION).
const kvmAPIVersion = 12

// probeKVM checks /dev/kvm and then runs the probe guest under KVM.
func probeKVM(ctx context.Context, qemuSystem string) kvmStatus {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return kvmStatus{Reason: err.Error()}
	}
	v, err := unix.IoctlRetInt(int(f.Fd()), 0xAE00) // KVM_GET_API_VERSION
	f.Close()
	if err != nil {
		return kvmStatus{Reason: "KVM_GET_API_VERSION: " + err.Error()}
	}
	if v != kvmAPIVersion {
		return kvmStatus{Reason: fmt.Sprintf("KVM API version %d, want %d", v, kvmAPIVersion)}
	}
	ctx, cancel := context.WithTimeout(ctx, kvmProbeTimeout)
	defer cancel()
	status, out, err := runKVMProbe(ctx, qemuSystem)
	return kvmProbeVerdict(ctx.Err() != nil, status, out, err)
}

// kvmProbeArgs starts the build's machine under KVM with no disk: its
// firmware (SeaBIOS) runs in real and protected mode looking for one.
func kvmProbeArgs() []string {
	return []string{
		"-machine", "pc,accel=kvm", "-cpu", "host", "-nodefaults", "-no-user-config",
		"-display", "none", "-m", "32", "-qmp", "stdio",
	}
}

// kvmProbeRun is how long the probe guest runs before its status is read.
const kvmProbeRun = time.Second

// runKVMProbe starts the probe machine, lets it run kvmProbeRun and asks
// QMP for its status ("running" when KVM runs it; "internal-error" when
// KVM cannot, as under a hypervisor without working nested
// virtualisation). out is qemu's standard error.
func runKVMProbe(ctx context.Context, qemuSystem string) (status, out string, err error) {
	cmd := exec.CommandContext(ctx, qemuSystem, kvmProbeArgs()...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return "", "", err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return "", "", err
	}
	if err := cmd.Start(); err != nil {
		return "", "", err
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		out = stderr.String()
	}()
	dec := json.NewDecoder(stdout)
	// reply reads messages up to the next command's answer, skipping the
	// greeting and events.
	reply := func() (map[string]json.RawMessage, error) {
		for {
			var m map[string]json.RawMessage
			if err := dec.Decode(&m); err != nil {
				return nil, fmt.Errorf("qemu exited: %w", err)
			}
			if _, ok := m["return"]; ok {
				return m, nil
			}
			if e, ok := m["error"]; ok {
				return nil, fmt.Errorf("QMP: %s", e)
			}
		}
	}
	if _, err := io.WriteString(stdin, `{"execute":"qmp_capabilities"}`+"\n"); err != nil {
		return "", "", err
	}
	if _, err := reply(); err != nil {
		return "", "", err
	}
	if err := sleep(ctx, kvmProbeRun); err != nil {
		return "", "", err
	}
	if _, err := io.WriteString(stdin, `{"execute":"query-status"}`+"\n"); err != nil {
		return "", "", err
	}
	m, err := reply()
	if err != nil {
		return "", "", err
	}
	var st struct {
		Status string `json:"status"`
	}
	if err := json.Unmarshal(m["return"], &st); err != nil {
		return "", "", fmt.Errorf("QMP query-status: %w", err)
	}
	return st.Status, "", nil
}

// kvmProbeVerdict reads the probe's outcome: the guest's status after
// kvmProbeRun, qemu's standard error, and the error that stopped the
// probe.
func kvmProbeVerdict(timedOut bool, status, output string, err error) kvmStatus {
	switch {
	case timedOut:
		return kvmStatus{Reason: fmt.Sprintf("a KVM guest did not answer within %s", kvmProbeTimeout)}
	case err != nil && output != "":
		return kvmStatus{Reason: fmt.Sprintf("a KVM guest failed: %s", firstLine(output))}
	case err != nil:
		return kvmStatus{Reason: fmt.Sprintf("a KVM guest failed: %s", err)}
	case status == "running":
		return kvmStatus{OK: true}
	case strings.Contains(output, "KVM internal error"):
		return kvmStatus{Reason: fmt.Sprintf("a KVM guest stopped with a KVM internal error (status %q): nested virtualisation that does not work?", status)}
	}
	return kvmStatus{Reason: fmt.Sprintf("a KVM guest stopped with status %q", status)}
}

func firstLine(s string) string {
	for i, c := range s {
		if c == '\n' {
			return s[:i]
		}
	}
	return s
}
