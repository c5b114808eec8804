package qemu

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"go.starlark.net/starlark"

	"github.com/studiorun/studiorun/builtins/dhcp"
	"github.com/studiorun/studiorun/builtins/libvirt"
	"github.com/studiorun/studiorun/builtins/ssh"
	"github.com/studiorun/studiorun/runtime"
	"github.com/studiorun/studiorun/runtime/apply"
)

// testSuffix makes the names of one test run's libvirt objects unique.
var testSuffix = fmt.Sprint(os.Getpid() % 100000)

// needLibvirt skips (or fails) unless this process, as root, can reach
// the system libvirtd and qemu-bridge-helper.
func needLibvirt(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("/run/libvirt/libvirt-sock"); err != nil {
		needIntegration(t, fmt.Sprintf("libvirtd is not running: %v", err))
	}
	if os.Geteuid() != 0 {
		needIntegration(t, "not root: qemu:///system and qemu-bridge-helper need it")
	}
	if _, err := os.Stat(bridgeHelper); err != nil {
		needIntegration(t, fmt.Sprintf("qemu-bridge-helper: %v (apt-get install qemu-system-x86)", err))
	}
}

// bridgeHelper is where Debian's qemu looks for its bridge helper.
const bridgeHelper = "/usr/lib/qemu/qemu-bridge-helper"

// evalProject evaluates script as root/name with the modules of an image
// build and of a studio.
func evalProject(t *testing.T, root, name, script string, vars ...string) *runtime.Plan {
	t.Helper()
	for _, dir := range []string{".git", ".studiorun"} {
		if err := os.MkdirAll(filepath.Join(root, dir), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	p := filepath.Join(root, name)
	if script != "" {
		if err := os.WriteFile(p, []byte(script), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	plan, err := runtime.Eval(runtime.Options{Script: p, Vars: vars, Modules: starlark.StringDict{
		"qemu": Module, "ssh": ssh.Module, "libvirt": libvirt.Module, "dhcp": dhcp.Module,
	}})
	if err != nil {
		t.Fatalf("eval %s: %v\n%s", name, err, script)
	}
	return plan
}

// upLibvirt applies the libvirt and dhcp resources of plan on
// qemu:///system through the libvirt driver, in plan order (dependencies
// first); what it created is deleted, dependents first, when the test
// ends.
func upLibvirt(t *testing.T, ctx context.Context, root string, plan *runtime.Plan) {
	t.Helper()
	d := libvirt.NewDriver(localLibvirt, root)
	d.SetPlan(plan)
	rep := newTestReporter(t)
	var entries []*apply.Entry
	t.Cleanup(func() {
		for _, e := range slices.Backward(entries) {
			if err := d.Delete(context.Background(), e, rep); err != nil {
				t.Errorf("delete %s: %v", e.Address, err)
			}
		}
		d.Close()
	})
	for _, r := range plan.Resources {
		if !strings.HasPrefix(r.Kind(), "libvirt.") && !strings.HasPrefix(r.Kind(), "dhcp.") {
			continue
		}
		c, err := d.Diff(ctx, r, nil)
		if err != nil {
			t.Fatalf("diff %s: %v", r.Address, err)
		}
		switch c.Action {
		case apply.NoOp:
			continue // a reservation that its network was created with
		case apply.Create:
		default:
			t.Fatalf("%s: %s, want a create: a test object of an earlier run is left", r.Address, c.Action)
		}
		e, err := d.Apply(ctx, r, c, rep)
		if err != nil {
			t.Fatalf("apply %s: %v", r.Address, err)
		}
		if e.Spec, err = r.Attributes(); err != nil {
			t.Fatal(err)
		}
		entries = append(entries, e)
	}
}

var bridgeConfMu sync.Mutex

// allowBridge adds "allow br" to /etc/qemu/bridge.conf, which
// qemu-bridge-helper reads, and takes it out again (with the file, if the
// test made it) when the test ends.
func allowBridge(t *testing.T, br string) {
	t.Helper()
	const conf = "/etc/qemu/bridge.conf"
	line := "allow " + br
	edit := func(change func(lines []string) []string) {
		bridgeConfMu.Lock()
		defer bridgeConfMu.Unlock()
		data, err := os.ReadFile(conf)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		var lines []string
		if s := strings.TrimSpace(string(data)); s != "" {
			lines = strings.Split(s, "\n")
		}
		lines = change(lines)
		if len(lines) == 0 {
			os.Remove(conf)
			return
		}
		if err := os.MkdirAll(filepath.Dir(conf), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(conf, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	edit(func(lines []string) []string { return append(lines, line) })
	t.Cleanup(func() {
		edit(func(lines []string) []string {
			if i := slices.Index(lines, line); i >= 0 {
				return slices.Delete(lines, i, i+1)
			}
			return lines
		})
	})
}

// bridgePorts lists the devices on bridge br (the taps of its guests).
func bridgePorts(br string) []string {
	entries, _ := os.ReadDir(filepath.Join("/sys/class/net", br, "brif"))
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}
