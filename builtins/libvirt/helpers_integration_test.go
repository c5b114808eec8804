package libvirt_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	golibvirt "github.com/digitalocean/go-libvirt"

	"github.com/studiorun/studiorun/builtins"
	"github.com/studiorun/studiorun/builtins/libvirt"
	"github.com/studiorun/studiorun/runtime"
	"github.com/studiorun/studiorun/runtime/apply"
)

const libvirtSocket = "/run/libvirt/libvirt-sock"

// needLibvirt skips the test when libvirtd is not running, except under
// STUDIORUN_REQUIRE_INTEGRATION=1 (CI), where it fails.
func needLibvirt(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(libvirtSocket); err != nil {
		if os.Getenv("STUDIORUN_REQUIRE_INTEGRATION") == "1" {
			t.Fatalf("libvirtd is required (STUDIORUN_REQUIRE_INTEGRATION=1): %v", err)
		}
		t.Skipf("libvirtd is not running: %v", err)
	}
}

// suffix makes the names of one test run unique on a shared libvirtd.
var suffix = fmt.Sprintf("%d", os.Getpid()%100000)

// evalScript evaluates a script in a fresh project directory and returns
// its plan and the project root.
func evalScript(t *testing.T, root, script string) *runtime.Plan {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(root, ".studiorun"), 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(root, "studio.star")
	if err := os.WriteFile(p, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	plan, err := runtime.Eval(runtime.Options{Script: p, Modules: builtins.Modules()})
	if err != nil {
		t.Fatalf("eval: %v\n%s", err, script)
	}
	return plan
}

// reporter records progress and notes.
type reporter struct {
	mu    sync.Mutex
	steps map[string]int64
	notes []string
}

func (r *reporter) Progress(addr runtime.Address, step string, done, total int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.steps == nil {
		r.steps = map[string]int64{}
	}
	r.steps[string(addr)+" "+step] = done
}

func (r *reporter) Notef(addr runtime.Address, format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.notes = append(r.notes, string(addr)+": "+fmt.Sprintf(format, args...))
}

// state is a minimal stand-in for the engine's state file.
type state map[runtime.Address]*apply.Entry

// diff diffs one resource against its entry.
func (s state) diff(t *testing.T, d apply.Driver, r *runtime.Resource) *apply.Change {
	t.Helper()
	c, err := d.Diff(context.Background(), r, s[r.Address])
	if err != nil {
		t.Fatalf("diff %s: %v", r.Address, err)
	}
	return c
}

// up diffs every resource of the plan, then applies the changes in plan
// order (dependencies first), as the engine does, and returns the changes.
func (s state) up(t *testing.T, d apply.Driver, plan *runtime.Plan, rep apply.Reporter) map[runtime.Address]*apply.Change {
	t.Helper()
	d.SetPlan(plan)
	changes := map[runtime.Address]*apply.Change{}
	for _, r := range plan.Resources {
		changes[r.Address] = s.diff(t, d, r)
	}
	for _, r := range plan.Resources {
		c := changes[r.Address]
		if c.Action == apply.NoOp {
			continue
		}
		e, err := d.Apply(context.Background(), r, c, rep)
		if err != nil {
			t.Fatalf("apply %s (%s): %v", r.Address, c.Action, err)
		}
		if e != nil {
			attrs, err := r.Attributes()
			if err != nil {
				t.Fatal(err)
			}
			e.Spec = attrs
			s[r.Address] = e
		}
	}
	return changes
}

// down deletes every entry, dependents first.
func (s state) down(t *testing.T, d apply.Driver, plan *runtime.Plan, rep apply.Reporter) {
	t.Helper()
	for i := len(plan.Resources) - 1; i >= 0; i-- {
		r := plan.Resources[i]
		e, ok := s[r.Address]
		if !ok {
			continue
		}
		if err := d.Delete(context.Background(), e, rep); err != nil {
			t.Fatalf("delete %s: %v", r.Address, err)
		}
		delete(s, r.Address)
	}
}

// allNoOp fails unless every resource diffs as a no-op.
func (s state) allNoOp(t *testing.T, d apply.Driver, plan *runtime.Plan) {
	t.Helper()
	for _, r := range plan.Resources {
		if c := s.diff(t, d, r); c.Action != apply.NoOp {
			t.Errorf("%s: %s after up, want no-op: %+v", r.Address, c.Action, c.Attrs)
		}
	}
}

// connect opens a go-libvirt connection for inspecting what the driver did.
func connect(t *testing.T, uri string) *golibvirt.Libvirt {
	t.Helper()
	u, _ := url.Parse(uri)
	l, err := golibvirt.ConnectToURI(u)
	if err != nil {
		t.Fatalf("connect to %s: %v", uri, err)
	}
	t.Cleanup(func() { l.Disconnect() })
	return l
}

// cleanup removes every object named studiorun-test-*<suffix> at uri, for
// t.Cleanup: domains, networks, volumes, pools.
func cleanup(t *testing.T, uri string) {
	u, _ := url.Parse(uri)
	l, err := golibvirt.ConnectToURI(u)
	if err != nil {
		t.Logf("cleanup: connect to %s: %v", uri, err)
		return
	}
	defer l.Disconnect()
	ours := func(name string) bool {
		return strings.HasPrefix(name, "studiorun-test-") && strings.HasSuffix(name, suffix)
	}
	doms, _, _ := l.ConnectListAllDomains(1, 0)
	for _, dom := range doms {
		if ours(dom.Name) {
			_ = l.DomainDestroy(dom)
			if err := l.DomainUndefineFlags(dom, golibvirt.DomainUndefineManagedSave|golibvirt.DomainUndefineNvram); err != nil {
				_ = l.DomainUndefine(dom)
			}
		}
	}
	nets, _, _ := l.ConnectListAllNetworks(1, 0)
	for _, n := range nets {
		if ours(n.Name) {
			_ = l.NetworkDestroy(n)
			_ = l.NetworkUndefine(n)
		}
	}
	pools, _, _ := l.ConnectListAllStoragePools(1, 0)
	for _, p := range pools {
		if !ours(p.Name) {
			continue
		}
		vols, _, _ := l.StoragePoolListAllVolumes(p, 1, 0)
		for _, v := range vols {
			_ = l.StorageVolDelete(v, 0)
		}
		_ = l.StoragePoolDestroy(p)
		_ = l.StoragePoolUndefine(p)
	}
}

// newDriver returns a driver for uri that is closed, and whose test
// objects are removed, when the test ends.
func newDriver(t *testing.T, uri, root string) *libvirt.Driver {
	t.Helper()
	cleanup(t, uri)
	d := libvirt.NewDriver(uri, root)
	t.Cleanup(func() {
		d.Close()
		cleanup(t, uri)
	})
	return d
}

// jsonOf renders a value for messages.
func jsonOf(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
