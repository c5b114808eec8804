package apply

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"

	"github.com/studiorun/studiorun/runtime"
)

// The engine's ordering, failure handling and state are tested with an
// in-memory driver that can be told to fail: failure injection that the
// real drivers (tested against libvirtd) cannot produce on demand.

type thing struct {
	Size int    `json:"size"`
	Host string `json:"host,omitempty"` // configured on this host, as an SSH task is
}

func (*thing) Kind() string { return "test.thing" }

// BoundHost implements HostBound for the things that name a host.
func (t *thing) BoundHost(runtime.Address) runtime.Address {
	if t.Host == "" {
		return ""
	}
	return runtime.Address("test.host." + t.Host)
}

// thingModule declares test.thing(name, size=1, after=[...]).
var thingModule = &starlarkstruct.Module{Name: "test", Members: starlark.StringDict{
	"thing": starlark.NewBuiltin("test.thing", func(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		var name string
		spec := &thing{Size: 1}
		after := new(starlark.List)
		if err := starlark.UnpackArgs(b.Name(), args, kwargs, "name", &name, "size?", &spec.Size, "after?", &after, "host?", &spec.Host); err != nil {
			return nil, err
		}
		var deps []runtime.Address
		for i := 0; i < after.Len(); i++ {
			r, err := runtime.UnpackRef(b.Name(), "after", after.Index(i), "test.thing")
			if err != nil {
				return nil, err
			}
			deps = append(deps, r.Address)
		}
		r, err := runtime.Declare(thread, b.Name(), name, spec, deps...)
		if err != nil {
			return nil, err
		}
		return runtime.NewRef(r), nil
	}),
}}

// injectDriver keeps objects in memory and fails where told to.
type injectDriver struct {
	mu                  sync.Mutex
	objects             map[runtime.Address]int // size by address
	failOn              map[runtime.Address]bool
	unchanged           map[runtime.Address]bool // Apply finds nothing to do after all
	slow                map[runtime.Address]bool // applied slowly, to widen races
	log                 []string
	running, maxRunning int
	hosts               map[string]int // things being applied per host
	maxHosts            int            // hosts with things applied at once
	// containers: a thing named "in-*" lives inside the first thing it
	// comes after (as a DHCP reservation in its network) and goes with it.
	containers map[runtime.Address]runtime.Address
}

func newInjectDriver() *injectDriver {
	return &injectDriver{objects: map[runtime.Address]int{}, failOn: map[runtime.Address]bool{}, unchanged: map[runtime.Address]bool{}, slow: map[runtime.Address]bool{}, hosts: map[string]int{}, containers: map[runtime.Address]runtime.Address{}}
}

func (d *injectDriver) Route(string, json.RawMessage) (Driver, error) { return d, nil }

func (d *injectDriver) SetPlan(*runtime.Plan) {}

func (d *injectDriver) Diff(_ context.Context, r *runtime.Resource, owned *Entry) (*Change, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	size, ok := d.objects[r.Address]
	want := r.Spec.(*thing).Size
	switch {
	case !ok:
		return &Change{Action: Create}, nil
	case owned == nil:
		return nil, fmt.Errorf("exists and is not ours")
	case size == want:
		return &Change{Action: NoOp}, nil
	case want < size:
		return &Change{Action: Replace, Attrs: []AttrChange{{Name: "size", Old: fmt.Sprint(size), New: fmt.Sprint(want), ForcesReplace: true}}}, nil
	}
	return &Change{Action: Update, Attrs: []AttrChange{{Name: "size", Old: fmt.Sprint(size), New: fmt.Sprint(want)}}}, nil
}

func (d *injectDriver) enter(what string, addr runtime.Address) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.log = append(d.log, what+" "+string(addr))
	d.running++
	d.maxRunning = max(d.maxRunning, d.running)
	if d.failOn[addr] {
		return errors.New("injected failure")
	}
	return nil
}

func (d *injectDriver) leave() {
	d.mu.Lock()
	d.running--
	d.mu.Unlock()
}

func (d *injectDriver) Apply(_ context.Context, r *runtime.Resource, c *Change, _ Reporter) (*Entry, error) {
	defer d.leave()
	if err := d.enter(c.Action.String(), r.Address); err != nil {
		return nil, err
	}
	if d.unchanged[r.Address] {
		return nil, ErrUnchanged
	}
	host := r.Spec.(*thing).Host
	d.mu.Lock()
	if host != "" {
		d.hosts[host]++
		d.maxHosts = max(d.maxHosts, len(d.hosts))
	}
	d.mu.Unlock()
	if d.slow[r.Address] {
		time.Sleep(50 * time.Millisecond)
	}
	d.mu.Lock()
	d.objects[r.Address] = r.Spec.(*thing).Size
	if strings.HasPrefix(r.Name, "in-") && len(r.DependsOn) > 0 {
		d.containers[r.Address] = r.DependsOn[0]
	}
	if d.hosts[host]--; d.hosts[host] <= 0 {
		delete(d.hosts, host)
	}
	d.mu.Unlock()
	return &Entry{ID: "id-" + r.Name}, nil
}

func (d *injectDriver) Delete(_ context.Context, e *Entry, _ Reporter) error {
	defer d.leave()
	if err := d.enter("delete", e.Address); err != nil {
		return err
	}
	d.mu.Lock()
	delete(d.objects, e.Address)
	for in, c := range d.containers {
		if c == e.Address {
			delete(d.objects, in)
		}
	}
	d.mu.Unlock()
	return nil
}

// DependencyReplaced implements DependencyReplacer: an "in-*" thing is
// made again in its replaced container.
func (d *injectDriver) DependencyReplaced(r *runtime.Resource, c *Change, dep *runtime.Resource) {
	if strings.HasPrefix(r.Name, "in-") && len(r.DependsOn) > 0 && r.DependsOn[0] == dep.Address {
		c.Action = Replace
		c.Attrs = append([]AttrChange{{Name: string(dep.Address), ForcesReplace: true, Note: "holds it, and is replaced"}}, c.Attrs...)
	}
}

// ContainerOf implements Container for the "in-*" things.
func (d *injectDriver) ContainerOf(e *Entry) (runtime.Address, bool) {
	if !strings.HasPrefix(e.Name, "in-") || len(e.DependsOn) == 0 {
		return "", false
	}
	return e.DependsOn[0], true
}

func (d *injectDriver) Close() error { return nil }

func (d *injectDriver) index(entry string) int {
	for i, l := range d.log {
		if l == entry {
			return i
		}
	}
	return -1
}

type fixture struct {
	t            *testing.T
	root         string
	driver       *injectDriver
	out          bytes.Buffer
	hostParallel int
}

func newFixture(t *testing.T) *fixture {
	root := t.TempDir()
	return &fixture{t: t, root: root, driver: newInjectDriver()}
}

// up evaluates src as the script and applies it, returning the changes and
// the apply error.
func (f *fixture) up(src string, parallel int) (*Changes, error) {
	f.t.Helper()
	script := filepath.Join(f.root, "main.star")
	if err := os.WriteFile(script, []byte(src), 0o644); err != nil {
		f.t.Fatal(err)
	}
	plan, err := runtime.Eval(runtime.Options{Script: script, Modules: starlark.StringDict{"test": thingModule}})
	if err != nil {
		f.t.Fatal(err)
	}
	state, err := OpenState(f.root, plan.Script)
	if err != nil {
		f.t.Fatal(err)
	}
	defer state.Close()
	e := &Engine{Router: f.driver, State: state, Parallel: parallel, HostParallel: f.hostParallel, Out: NewOutput(&f.out, false)}
	changes, err := e.Plan(context.Background(), plan)
	if err != nil {
		f.t.Fatal(err)
	}
	e.Out.Changes(changes)
	return changes, e.Apply(context.Background(), changes)
}

const chain = `
base = test.thing("base")
a = test.thing("a", after = [base])
b = test.thing("b", after = [base])
top = test.thing("top", after = [a, b])
`

func TestApplyInDependencyOrderThenNoChanges(t *testing.T) {
	f := newFixture(t)
	if _, err := f.up(chain, 8); err != nil {
		t.Fatal(err)
	}
	d := f.driver
	for _, pair := range [][2]string{{"base", "a"}, {"base", "b"}, {"a", "top"}, {"b", "top"}} {
		if d.index("create test.thing."+pair[0]) > d.index("create test.thing."+pair[1]) {
			t.Errorf("%s created after %s: %v", pair[0], pair[1], d.log)
		}
	}
	changes, err := f.up(chain, 8)
	if err != nil || !changes.Empty() {
		t.Errorf("second run: empty=%v err=%v\n%s", changes.Empty(), err, f.out.String())
	}
}

func TestParallelIsBounded(t *testing.T) {
	f := newFixture(t)
	var src strings.Builder
	for i := 0; i < 20; i++ {
		fmt.Fprintf(&src, "test.thing(\"t%d\")\n", i)
	}
	if _, err := f.up(src.String(), 3); err != nil {
		t.Fatal(err)
	}
	if f.driver.maxRunning > 3 {
		t.Errorf("%d ran at once, want at most 3", f.driver.maxRunning)
	}
}

func TestHostsAreBoundedApartFromResources(t *testing.T) {
	f := newFixture(t)
	f.hostParallel = 4
	var src strings.Builder
	for i := 0; i < 12; i++ {
		fmt.Fprintf(&src, "test.thing(\"h%d:task\", host = \"h%d\")\n", i, i)
		fmt.Fprintf(&src, "test.thing(\"r%d\")\n", i)
		f.driver.slow[runtime.Address(fmt.Sprintf("test.thing.h%d:task", i))] = true
		f.driver.slow[runtime.Address(fmt.Sprintf("test.thing.r%d", i))] = true
	}
	if _, err := f.up(src.String(), 2); err != nil {
		t.Fatal(err)
	}
	if f.driver.maxHosts > 4 {
		t.Errorf("%d hosts were configured at once, want at most 4", f.driver.maxHosts)
	}
	if f.driver.maxHosts < 2 {
		t.Errorf("hosts were configured one at a time, want up to 4 at once")
	}
	if f.driver.maxRunning > 2+4 {
		t.Errorf("%d things ran at once, want at most 2 resources and 4 hosts", f.driver.maxRunning)
	}
}

func TestHostTasksReportAsAnsibleDoes(t *testing.T) {
	f := newFixture(t)
	src := `
a = test.thing("h1:a", host = "h1")
b = test.thing("h1:b", host = "h1", after = [a], size = %d)
c = test.thing("h1:c", host = "h1", after = [b])
test.thing("h2:a", host = "h2")
`
	if _, err := f.up(fmt.Sprintf(src, 1), 8); err != nil {
		t.Fatal(err)
	}
	f.out.Reset()
	f.driver.failOn["test.thing.h1:b"] = true
	if _, err := f.up(fmt.Sprintf(src, 2), 8); err == nil {
		t.Fatal("want the injected failure")
	}
	out := f.out.String()
	for _, want := range []string{
		"ok: [h1] test.thing a\nfailed: [h1] test.thing b: injected failure\n",
		"ok: [h2] test.thing a\n",
		"  h1  ok=1 changed=0 failed=1 skipped=1 unreachable=0\n",
		"  h2  ok=1 changed=0 failed=0 skipped=0 unreachable=0\n",
		"Apply failed: 1 failed.",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "test.thing c") || strings.Contains(out, "updating") {
		t.Errorf("a task after the failed one was reported, or a start line shown:\n%s", out)
	}

	// A task that finds nothing to do when applied is ok, not changed.
	f.out.Reset()
	delete(f.driver.failOn, "test.thing.h1:b")
	f.driver.unchanged["test.thing.h1:b"] = true
	if _, err := f.up(fmt.Sprintf(src, 2), 8); err != nil {
		t.Fatal(err)
	}
	out = f.out.String()
	for _, want := range []string{
		"ok: [h1] test.thing b\n",
		"  h1  ok=3 changed=0 failed=0 skipped=0 unreachable=0\n",
		"Apply complete: nothing to do.",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestFailureStopsDependentsNotSiblings(t *testing.T) {
	f := newFixture(t)
	f.driver.failOn["test.thing.a"] = true
	_, err := f.up(chain+`other = test.thing("other")`+"\n", 8)
	if err == nil {
		t.Fatal("want an error")
	}
	msg := err.Error()
	for _, want := range []string{
		"test.thing.a: injected failure",
		"test.thing.top: not applied: test.thing.a failed",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
	for _, created := range []string{"base", "b", "other"} {
		if _, ok := f.driver.objects[runtime.Address("test.thing."+created)]; !ok {
			t.Errorf("%s was not created although it does not depend on a", created)
		}
	}
	// The failed create stays in the state as incomplete; the next run,
	// with the fault gone, finishes it.
	state, _ := os.ReadFile(StatePath(f.root, "main.star"))
	if !strings.Contains(string(state), `"incomplete": true`) {
		t.Errorf("state does not mark the failed create:\n%s", state)
	}
	delete(f.driver.failOn, "test.thing.a")
	if _, err := f.up(chain+`other = test.thing("other")`+"\n", 8); err != nil {
		t.Fatalf("the next run did not converge: %v", err)
	}
	if !strings.Contains(f.out.String(), "Apply complete: 2 created.") {
		t.Errorf("want a and top created on the second run:\n%s", f.out.String())
	}
}

func TestRemovedDeclarationIsDeletedDependentsFirst(t *testing.T) {
	f := newFixture(t)
	if _, err := f.up(chain, 8); err != nil {
		t.Fatal(err)
	}
	f.driver.log = nil
	changes, err := f.up(`base = test.thing("base")`+"\n", 8)
	if err != nil {
		t.Fatal(err)
	}
	if n := changes.Counts(); n[Delete] != 3 {
		t.Errorf("want 3 deletions, got %v", n)
	}
	d := f.driver
	if d.index("delete test.thing.top") > d.index("delete test.thing.a") {
		t.Errorf("a deleted before top, which depends on it: %v", d.log)
	}
	if _, ok := d.objects["test.thing.a"]; ok {
		t.Error("a still exists")
	}
}

func TestContainedObjectsGoWithTheirContainer(t *testing.T) {
	const fleet = `
net = test.thing("net")
test.thing("in-a", after = [net])
test.thing("in-b", after = [net])
test.thing("user", after = [net])
`
	f := newFixture(t)
	d := f.driver
	if _, err := f.up(fleet, 8); err != nil {
		t.Fatal(err)
	}

	// Its container stays: the driver deletes it from the container.
	d.log = nil
	if _, err := f.up(strings.Replace(fleet, `test.thing("in-b", after = [net])`, "", 1), 8); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(d.log, ", "); got != "delete test.thing.in-b" {
		t.Errorf("removing in-b alone: log %q, want its deletion by the driver", got)
	}

	// The container goes too, failing: what it holds stays, in the state
	// and in the container.
	d.log = nil
	d.failOn["test.thing.net"] = true
	if _, err := f.up(`test.thing("other")`, 8); err == nil {
		t.Fatal("deleting net: want the injected failure")
	}
	if d.index("delete test.thing.in-a") >= 0 {
		t.Errorf("in-a deleted by the driver although its container was deleted too: %v", d.log)
	}
	if _, ok := d.objects["test.thing.in-a"]; !ok {
		t.Errorf("in-a is gone although the deletion of its container failed")
	}

	// The container goes: deleted first, and what it held is only forgotten.
	d.log = nil
	delete(d.failOn, "test.thing.net")
	f.out.Reset()
	if _, err := f.up(`test.thing("other")`, 8); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(d.log, ", "); got != "delete test.thing.net" {
		t.Errorf("log %q, want only the container deleted by the driver (user went in the failed run)", got)
	}
	if !strings.Contains(f.out.String(), "test.thing.in-a: gone with test.thing.net\n") {
		t.Errorf("output does not say in-a went with its container:\n%s", f.out.String())
	}
	if _, ok := d.objects["test.thing.in-a"]; ok {
		t.Errorf("in-a still exists")
	}
	changes, err := f.up(`test.thing("other")`, 8)
	if err != nil || !changes.Empty() {
		t.Errorf("a run after: empty=%v err=%v (in-a still in the state?)\n%s", changes.Empty(), err, f.out.String())
	}
}

func TestContainedObjectsAreReplacedWithTheirContainer(t *testing.T) {
	const fleet = `
net = test.thing("net", size = %d)
test.thing("in-a", after = [net])
test.thing("user", after = [net])
`
	f := newFixture(t)
	d := f.driver
	if _, err := f.up(fmt.Sprintf(fleet, 5), 8); err != nil {
		t.Fatal(err)
	}
	d.log = nil
	f.out.Reset()
	changes, err := f.up(fmt.Sprintf(fleet, 2), 8) // net is replaced
	if err != nil {
		t.Fatal(err)
	}
	if n := changes.Counts(); n[Replace] != 2 {
		t.Errorf("want net and in-a replaced, got %v\n%s", n, f.out.String())
	}
	if !strings.Contains(f.out.String(), "-/+ test.thing.in-a\n      ~ test.thing.net  # forces replacement  # holds it, and is replaced\n") {
		t.Errorf("the plan does not say why in-a is replaced:\n%s", f.out.String())
	}
	if !strings.Contains(f.out.String(), "Apply complete: 2 replaced.") {
		t.Errorf("the summary does not count 2 replaced:\n%s", f.out.String())
	}
	if got := strings.Join(d.log, ", "); got != "delete test.thing.net, create test.thing.net, create test.thing.in-a" {
		t.Errorf("log %q, want net deleted and made again, then in-a made again in it", got)
	}
	if _, ok := d.objects["test.thing.in-a"]; !ok {
		t.Errorf("in-a is not made again in the new net")
	}
	changes, err = f.up(fmt.Sprintf(fleet, 2), 8)
	if err != nil || !changes.Empty() {
		t.Errorf("a run after: empty=%v err=%v\n%s", changes.Empty(), err, f.out.String())
	}
}

func TestReplaceDeletesThenCreates(t *testing.T) {
	f := newFixture(t)
	if _, err := f.up(`test.thing("x", size = 5)`, 8); err != nil {
		t.Fatal(err)
	}
	f.driver.log = nil
	if _, err := f.up(`test.thing("x", size = 2)`, 8); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(f.driver.log, ", "); got != "delete test.thing.x, create test.thing.x" {
		t.Errorf("log = %s", got)
	}
	if !strings.Contains(f.out.String(), "-/+ test.thing.x\n      ~ size: 5 -> 2  # forces replacement") {
		t.Errorf("plan output:\n%s", f.out.String())
	}
}

func TestForeignObjectIsRefused(t *testing.T) {
	f := newFixture(t)
	f.driver.objects["test.thing.x"] = 1
	script := filepath.Join(f.root, "main.star")
	os.WriteFile(script, []byte(`test.thing("x")`), 0o644)
	plan, _ := runtime.Eval(runtime.Options{Script: script, Modules: starlark.StringDict{"test": thingModule}})
	state, _ := OpenState(f.root, plan.Script)
	defer state.Close()
	e := &Engine{Router: f.driver, State: state, Parallel: 1, Out: NewOutput(&f.out, false)}
	_, err := e.Plan(context.Background(), plan)
	if err == nil || !strings.Contains(err.Error(), "test.thing.x: exists and is not ours") {
		t.Errorf("err = %v", err)
	}
}

func TestSecondRunIsLockedOut(t *testing.T) {
	root := t.TempDir()
	s, err := OpenState(root, "scripts/studio.star")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, err = OpenState(root, "scripts/studio.star")
	want := fmt.Sprintf("another studiorun (pid %d) is applying this script", os.Getpid())
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("err = %v, want %q", err, want)
	}
}

func TestJSONEvents(t *testing.T) {
	f := newFixture(t)
	script := filepath.Join(f.root, "main.star")
	os.WriteFile(script, []byte(chain), 0o644)
	plan, _ := runtime.Eval(runtime.Options{Script: script, Modules: starlark.StringDict{"test": thingModule}})
	state, _ := OpenState(f.root, plan.Script)
	defer state.Close()
	var out bytes.Buffer
	e := &Engine{Router: f.driver, State: state, Parallel: 2, Out: NewOutput(&out, true)}
	changes, _ := e.Plan(context.Background(), plan)
	e.Out.Changes(changes)
	if err := e.Apply(context.Background(), changes); err != nil {
		t.Fatal(err)
	}
	types := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var ev map[string]any
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("not a JSON line: %q", line)
		}
		types[ev["type"].(string)]++
	}
	if types["change"] != 4 || types["start"] != 4 || types["done"] != 4 || types["summary"] != 1 {
		t.Errorf("event counts: %v", types)
	}
}

// TestStateFileRoundTrips writes entries from many goroutines at once and
// reads the file back: valid JSON, every entry there, sorted.
func TestStateFileRoundTrips(t *testing.T) {
	root := t.TempDir()
	s, err := OpenState(root, "scripts/studio.star")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := 0; i < 40; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			addr := runtime.Address(fmt.Sprintf("test.thing.t%02d", i))
			if err := s.Put(&Entry{Address: addr, Kind: "test.thing", Name: addr.Name(), Spec: json.RawMessage(`{"size":1}`)}); err != nil {
				t.Error(err)
			}
			if i%4 == 0 {
				if err := s.Remove(addr); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	s.Close()
	s, err = OpenState(root, "scripts/studio.star")
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer s.Close()
	entries := s.Entries()
	if len(entries) != 30 {
		t.Fatalf("%d entries, want 30", len(entries))
	}
	for i := 1; i < len(entries); i++ {
		if entries[i-1].Address >= entries[i].Address {
			t.Errorf("entries not sorted: %s before %s", entries[i-1].Address, entries[i].Address)
		}
	}
	if string(entries[0].Spec) != `{"size":1}` && !strings.Contains(string(entries[0].Spec), `"size": 1`) {
		t.Errorf("spec = %s", entries[0].Spec)
	}
}

// TestOrderHoldsThroughUnchangedResources: c depends on b, which depends
// on a; with b already as declared, c still waits for a.
func TestOrderHoldsThroughUnchangedResources(t *testing.T) {
	f := newFixture(t)
	const src = `
a = test.thing("a")
b = test.thing("b", after = [a])
c = test.thing("c", after = [b])
`
	if _, err := f.up(src, 8); err != nil {
		t.Fatal(err)
	}
	// a and c change; b does not. a is slow: c must still wait for it.
	f.driver.log = nil
	f.driver.slow["test.thing.a"] = true
	if _, err := f.up(strings.ReplaceAll(strings.ReplaceAll(src, `thing("a")`, `thing("a", size = 3)`), `thing("c", after`, `thing("c", size = 3, after`), 8); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(f.driver.log, ", "); got != "update test.thing.a, update test.thing.c" {
		t.Errorf("log = %s, want a before c", got)
	}
}
