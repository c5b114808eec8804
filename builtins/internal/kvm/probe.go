// Package kvm tells whether KVM can run guests on this machine.
//
// /dev/kvm opening is not enough: under a hypervisor without working
// nested virtualisation /dev/kvm exists, KVM_GET_API_VERSION answers, and
// even a guest that only runs real-mode code works, yet the firmware
// stops with "KVM internal error" (or qemu aborts setting an MSR with
// -cpu host) as soon as it runs protected-mode code. So the probe starts
// a pc machine with the host's CPU under KVM with no disk, lets its
// firmware run for a second and asks QMP whether it still runs.
package kvm

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

// Status is the probe's verdict.
type Status struct {
	OK     bool
	Reason string // why not, when !OK
}

// probeTimeout bounds the probe: a working KVM answers in well under a
// second.
const probeTimeout = 3 * time.Second

// probeRun is how long the probe guest runs before its status is read.
const probeRun = time.Second

// apiVersion is the only KVM API version there is (KVM_GET_API_VERSION).
const apiVersion = 12

// Probe checks /dev/kvm and then runs the probe guest under KVM with
// qemuSystem (qemu-system-x86_64 or a path to it). It takes about a
// second, at most probeTimeout.
func Probe(ctx context.Context, qemuSystem string) Status {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return Status{Reason: err.Error()}
	}
	v, err := unix.IoctlRetInt(int(f.Fd()), 0xAE00) // KVM_GET_API_VERSION
	f.Close()
	if err != nil {
		return Status{Reason: "KVM_GET_API_VERSION: " + err.Error()}
	}
	if v != apiVersion {
		return Status{Reason: fmt.Sprintf("KVM API version %d, want %d", v, apiVersion)}
	}
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	status, out, err := run(ctx, qemuSystem)
	return verdict(ctx.Err() != nil, status, out, err)
}

// probeArgs starts a pc machine under KVM with no disk: its firmware
// (SeaBIOS) runs in real and protected mode looking for one.
func probeArgs() []string {
	return []string{
		"-machine", "pc,accel=kvm", "-cpu", "host", "-nodefaults", "-no-user-config",
		"-display", "none", "-m", "32", "-qmp", "stdio",
	}
}

// run starts the probe machine, lets it run probeRun and asks QMP for its
// status ("running" when KVM runs it; "internal-error" when KVM cannot, as
// under a hypervisor without working nested virtualisation). out is
// qemu's standard error.
func run(ctx context.Context, qemuSystem string) (status, out string, err error) {
	cmd := exec.CommandContext(ctx, qemuSystem, probeArgs()...)
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
	t := time.NewTimer(probeRun)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		return "", "", ctx.Err()
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

// verdict reads the probe's outcome: the guest's status after probeRun,
// qemu's standard error, and the error that stopped the probe.
func verdict(timedOut bool, status, output string, err error) Status {
	switch {
	case timedOut:
		return Status{Reason: fmt.Sprintf("a KVM guest did not answer within %s", probeTimeout)}
	case err != nil && output != "":
		first, _, _ := strings.Cut(output, "\n")
		return Status{Reason: fmt.Sprintf("a KVM guest failed: %s", first)}
	case err != nil:
		return Status{Reason: fmt.Sprintf("a KVM guest failed: %s", err)}
	case status == "running":
		return Status{OK: true}
	case strings.Contains(output, "KVM internal error"):
		return Status{Reason: fmt.Sprintf("a KVM guest stopped with a KVM internal error (status %q): nested virtualisation that does not work?", status)}
	}
	return Status{Reason: fmt.Sprintf("a KVM guest stopped with status %q", status)}
}
