package kvm

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/studiorun/studiorun/builtins/ssh/sshtest"
)

func TestVerdict(t *testing.T) {
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
		got := verdict(tc.timedOut, tc.status, tc.output, tc.err)
		if got.OK != tc.ok || !strings.Contains(got.Reason, tc.reason) {
			t.Errorf("%s: verdict = %+v, want ok %v reason ~%q", tc.name, got, tc.ok, tc.reason)
		}
	}
}

// TestProbeGivesAVerdict runs the real probe: whatever KVM does here
// (works, is missing, or is present and broken as under a hypervisor
// without nested virtualisation), it returns a verdict, with the reason
// when KVM does not work (its own timeout bounds a hanging KVM; the time
// is logged, not asserted).
func TestProbeGivesAVerdict(t *testing.T) {
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		sshtest.NeedIntegration(t, "qemu-system-x86_64 is not installed")
	}
	start := time.Now()
	st := Probe(context.Background(), "qemu-system-x86_64")
	t.Logf("KVM works: %v (%s) in %s", st.OK, st.Reason, time.Since(start).Round(time.Millisecond))
	if !st.OK && st.Reason == "" {
		t.Errorf("no reason given for a KVM that does not work")
	}
}
