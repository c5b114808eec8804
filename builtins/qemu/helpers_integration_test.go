package qemu

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/studiorun/studiorun/runtime"
)

// needIntegration skips the test with reason, or fails it when
// STUDIORUN_REQUIRE_INTEGRATION=1 (CI).
func needIntegration(t *testing.T, reason string) {
	t.Helper()
	if os.Getenv("STUDIORUN_REQUIRE_INTEGRATION") == "1" {
		t.Fatalf("STUDIORUN_REQUIRE_INTEGRATION=1 and %s", reason)
	}
	t.Skip(reason)
}

// needPrograms skips (or fails) unless the programs are on $PATH.
func needPrograms(t *testing.T, progs ...string) {
	t.Helper()
	for _, p := range progs {
		if _, err := exec.LookPath(p); err != nil {
			needIntegration(t, fmt.Sprintf("%s is not installed", p))
		}
	}
}

// testReporter logs a build's notes and the end of its progress steps.
type testReporter struct {
	t    *testing.T
	mu   sync.Mutex
	last map[string]int64
}

func newTestReporter(t *testing.T) *testReporter {
	return &testReporter{t: t, last: map[string]int64{}}
}

func (r *testReporter) Progress(addr runtime.Address, step string, done, total int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.last[step] = done
}

func (r *testReporter) Notef(addr runtime.Address, format string, args ...any) {
	r.t.Logf("%s: %s", addr, fmt.Sprintf(format, args...))
}

// noQemuLeft fails when a qemu-system process of this test is still
// running (its command line names dir).
func noQemuLeft(t *testing.T, dir string) {
	t.Helper()
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		cmd := strings.ReplaceAll(string(data), "\x00", " ")
		if strings.Contains(cmd, "qemu-system") && strings.Contains(cmd, dir) {
			t.Errorf("qemu still running: %s: %s", filepath.Dir(p), cmd)
		}
	}
}
