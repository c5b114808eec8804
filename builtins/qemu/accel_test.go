package qemu

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestChooseAccel(t *testing.T) {
	works := kvmStatus{OK: true}
	broken := kvmStatus{Reason: "a KVM guest stopped with a KVM internal error"}
	for _, tc := range []struct {
		requested string
		kvm       kvmStatus
		accel     string
		notice    string // substring
		err       string // substring
	}{
		{"auto", works, "kvm", "", ""},
		{"auto", broken, "tcg", "KVM does not work here (a KVM guest stopped with a KVM internal error): building under software emulation (TCG)", ""},
		{"kvm", works, "kvm", "", ""},
		{"kvm", broken, "", "", `accelerator "kvm": KVM does not work here (a KVM guest stopped with a KVM internal error): use accelerator = "auto"`},
		{"tcg", works, "tcg", "", ""},
		{"tcg", broken, "tcg", "", ""},
		{"hvf", works, "", "", `accelerator "hvf": want "auto", "kvm" or "tcg"`},
	} {
		accel, notice, err := chooseAccel(tc.requested, tc.kvm)
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("chooseAccel(%q, %+v) error %v, want %q", tc.requested, tc.kvm, err, tc.err)
		case tc.err == "" && err != nil:
			t.Errorf("chooseAccel(%q, %+v): %v", tc.requested, tc.kvm, err)
		case accel != tc.accel || (tc.notice == "") != (notice == "") || !strings.Contains(notice, tc.notice):
			t.Errorf("chooseAccel(%q, %+v) = %q, %q; want %q, %q", tc.requested, tc.kvm, accel, notice, tc.accel, tc.notice)
		}
	}
}

func TestKVMProbeVerdict(t *testing.T) {
	for _, tc := range []struct {
		name     string
		timedOut bool
		status   string
		output   string
		err      error
		ok       bool
		reason   string
	}{
		{"running", false, "running", "", nil, true, ""},
		{"internal error", false, "internal-error", "KVM internal error. Suberror: 1\nemulation failure\n", nil, false, "KVM internal error (status \"internal-error\")"},
		{"aborted", false, "", "qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69\nassertion failed\n", errors.New("qemu exited: EOF"), false, "a KVM guest failed: qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69"},
		{"hang", true, "", "", context.DeadlineExceeded, false, "did not answer within 3s"},
		{"paused", false, "paused", "", nil, false, `stopped with status "paused"`},
	} {
		got := kvmProbeVerdict(tc.timedOut, tc.status, tc.output, tc.err)
		if got.OK != tc.ok || !strings.Contains(got.Reason, tc.reason) {
			t.Errorf("%s: kvmProbeVerdict = %+v, want ok %v reason ~%q", tc.name, got, tc.ok, tc.reason)
		}
	}
}

// TestProbeKVMGivesAVerdict runs the real probe: whatever KVM does here
// (works, is missing, or is present and broken as under a hypervisor
// without nested virtualisation), it returns a verdict, with the reason
// when KVM does not work (its own timeout bounds a hanging KVM; the time
// is logged, not asserted).
func TestProbeKVMGivesAVerdict(t *testing.T) {
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		needIntegration(t, "qemu-system-x86_64 is not installed")
	}
	start := time.Now()
	st := probeKVM(context.Background(), "qemu-system-x86_64")
	t.Logf("KVM works: %v (%s) in %s", st.OK, st.Reason, time.Since(start).Round(time.Millisecond))
	if !st.OK && st.Reason == "" {
		t.Errorf("no reason given for a KVM that does not work")
	}
}
