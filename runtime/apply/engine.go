package apply

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/studiorun/studiorun/runtime"
)

// Router finds the driver of a kind. attrs are the resource's attributes
// (or a state entry's recorded spec), for kinds that several drivers share:
// a dhcp.reservation on a libvirt network or on a hosts file.
type Router interface {
	Route(kind string, attrs json.RawMessage) (Driver, error)
	Close() error
}

// Engine applies plans through drivers and records what it creates.
type Engine struct {
	Router   Router
	State    *State
	Parallel int // at most this many resources at once, besides SSH hosts
	// HostParallel is how many SSH hosts are configured at once (0: as
	// many as Parallel).
	HostParallel int
	Out          *Output // progress, results and events
}

// item is one resource's change: a declared resource, or an owned object
// whose declaration is gone (res nil, Action Delete).
type item struct {
	res    *runtime.Resource
	entry  *Entry // the state's entry, if any
	change *Change
	driver Driver
	attrs  json.RawMessage
	failed error // a host-bound resource whose host could not be read
}

// host returns the host a resource is applied on, or "" when it is not
// host-bound.
func (it *item) host() runtime.Address {
	if it.res == nil {
		return ""
	}
	if hb, ok := it.res.Spec.(HostBound); ok {
		return hb.BoundHost(it.res.Address)
	}
	return ""
}

func (it *item) address() runtime.Address { return it.change.Address }

// Changes is what applying would do, in the order it is shown.
type Changes struct {
	items []*item
}

// Counts returns how many resources each action touches.
func (c *Changes) Counts() map[Action]int {
	n := map[Action]int{}
	for _, it := range c.items {
		n[it.change.Action]++
	}
	return n
}

// Reportable reports whether applying changes is worth running although
// the changes are empty: objects recognised without the state are then
// recorded, and hosts get their "ok" lines and recap, as Ansible prints
// them on a run that changes nothing.
func (c *Changes) Reportable() bool {
	for _, it := range c.items {
		if it.host() != "" || (it.change.Recovered != nil && it.entry == nil) {
			return true
		}
	}
	return false
}

// Empty reports whether applying would change nothing.
func (c *Changes) Empty() bool {
	n := c.Counts()
	return len(c.items) == n[NoOp] && c.Failed() == nil
}

// Failed returns an error naming the hosts that could not be read, or nil.
func (c *Changes) Failed() error {
	var msgs []string
	seen := map[runtime.Address]bool{}
	for _, it := range c.items {
		if it.failed != nil && !seen[it.host()] {
			seen[it.host()] = true
			msgs = append(msgs, fmt.Sprintf("%s: %v", it.host(), it.failed))
		}
	}
	if len(msgs) == 0 {
		return nil
	}
	return fmt.Errorf("%d host(s) failed:\n  %s", len(msgs), strings.Join(msgs, "\n  "))
}

// Plan asks the drivers how the real objects differ from the plan (reading
// in parallel) and adds the deletion of owned objects no longer declared.
func (e *Engine) Plan(ctx context.Context, p *runtime.Plan) (*Changes, error) {
	items := make([]*item, 0, len(p.Resources))
	for _, r := range p.Resources {
		attrs, err := r.Attributes()
		if err != nil {
			return nil, err
		}
		items = append(items, &item{res: r, entry: e.State.Entry(r.Address), attrs: attrs})
	}
	var errs []string
	prepared := map[Driver]bool{}
	for _, it := range items {
		d, err := e.Router.Route(it.res.Kind(), it.attrs)
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", it.res.Address, err))
			continue
		}
		it.driver = d
		if !prepared[d] {
			d.SetPlan(p)
			prepared[d] = true
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("cannot plan %d resource(s):\n  %s", len(errs), strings.Join(errs, "\n  "))
	}
	var mu sync.Mutex
	sem := make(chan struct{}, max(e.Parallel, e.HostParallel, 1))
	var wg sync.WaitGroup
	for _, it := range items {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			err := e.diff(ctx, it)
			switch {
			case err != nil && it.host() != "":
				// A host that cannot be read fails alone.
				it.failed = err
				it.change = &Change{Address: it.res.Address, Action: NoOp}
			case err != nil:
				mu.Lock()
				errs = append(errs, fmt.Sprintf("%s: %v", it.res.Address, err))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		sort.Strings(errs)
		return nil, fmt.Errorf("cannot plan %d resource(s):\n  %s", len(errs), strings.Join(errs, "\n  "))
	}
	propagateReplaces(items)
	declared := map[runtime.Address]bool{}
	for _, r := range p.Resources {
		declared[r.Address] = true
	}
	var gone []*Entry
	for _, en := range e.State.Entries() {
		if !declared[en.Address] {
			gone = append(gone, en)
		}
	}
	deletions, err := e.deletions(gone)
	if err != nil {
		return nil, err
	}
	return &Changes{items: append(deletions, items...)}, nil
}

// propagateReplaces tells the drivers of the objects that depend on a
// replaced one (DependencyReplacer), so that they plan what the replace
// means for them. One pass suffices for chains: the plan's resources are
// in topological order, so a dependent made a replace here is seen as one
// by its own dependents later in the pass.
func propagateReplaces(items []*item) {
	byAddr := map[runtime.Address]*item{}
	for _, it := range items {
		byAddr[it.address()] = it
	}
	for _, it := range items {
		dr, ok := it.driver.(DependencyReplacer)
		if !ok || it.failed != nil || (it.change.Action != NoOp && it.change.Action != Update) {
			continue
		}
		for _, dep := range it.res.DependsOn {
			if d := byAddr[dep]; d != nil && d.change.Action == Replace {
				dr.DependencyReplaced(it.res, it.change, d.res)
			}
		}
	}
}

func (e *Engine) diff(ctx context.Context, it *item) error {
	c, err := it.driver.Diff(ctx, it.res, it.entry)
	if err != nil {
		return err
	}
	c.Address = it.res.Address
	it.change = c
	return nil
}

// PlanDestroy returns the deletion of every object the state records.
func (e *Engine) PlanDestroy() (*Changes, error) {
	items, err := e.deletions(e.State.Entries())
	if err != nil {
		return nil, err
	}
	return &Changes{items: items}, nil
}

// deletions turns entries into Delete items, dependents first.
func (e *Engine) deletions(entries []*Entry) ([]*item, error) {
	items := make([]*item, 0, len(entries))
	for _, en := range entries {
		d, err := e.Router.Route(en.Kind, en.Spec)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", en.Address, err)
		}
		items = append(items, &item{entry: en, driver: d, change: &Change{Address: en.Address, Action: Delete}})
	}
	return items, nil
}

// Apply makes the changes: first the deletions (of removed objects and of
// the objects to replace), dependents before what they depend on; then the
// creations and updates, dependencies first. Both phases run in parallel
// where the graph allows. The error names every resource that failed.
func (e *Engine) Apply(ctx context.Context, c *Changes) error {
	byAddr := map[runtime.Address]*step{}
	var deletes, upserts []*step
	for _, it := range c.items {
		switch it.change.Action {
		case Delete, Replace:
			s := &step{item: it, deletion: true}
			deletes = append(deletes, s)
			byAddr[it.address()] = s
		}
	}
	// An object is deleted after the objects that depend on it, except an
	// object that goes with its container: the container is deleted first.
	for _, s := range deletes {
		if c := containerStep(s, byAddr); c != nil {
			s.container = c
			s.after = append(s.after, c)
			continue
		}
		for _, dep := range s.item.entry.DependsOn {
			if d, ok := byAddr[dep]; ok {
				d.after = append(d.after, s)
			}
		}
	}
	runSteps(ctx, deletes, e.slots(), e.runDelete)
	deleted := map[runtime.Address]*step{}
	for _, s := range deletes {
		deleted[s.item.address()] = s
	}
	upByAddr := map[runtime.Address]*step{}
	for _, it := range c.items {
		if it.failed != nil {
			s := &step{item: it, status: failed, err: it.failed}
			upserts = append(upserts, s)
			upByAddr[it.address()] = s
			continue
		}
		switch it.change.Action {
		case Create, Update, Replace:
			s := &step{item: it}
			if d := deleted[it.address()]; d != nil && d.status != succeeded {
				s.status, s.err = skipped, fmt.Errorf("not created again: deleting it %s", d.status)
			}
			upserts = append(upserts, s)
			upByAddr[it.address()] = s
		case NoOp:
			e.recover(it)
			if it.host() != "" {
				// A host's unchanged tasks take their place in its chain,
				// to be reported "ok" in order, as Ansible does.
				s := &step{item: it}
				upserts = append(upserts, s)
				upByAddr[it.address()] = s
			}
		}
	}
	// A step comes after the steps it depends on, directly or through
	// resources with nothing to do: the third task of a host waits for the
	// first even when the second is already as declared.
	declared := map[runtime.Address]*item{}
	for _, it := range c.items {
		if it.res != nil {
			declared[it.address()] = it
		}
	}
	var link func(s *step, deps []runtime.Address, seen map[runtime.Address]bool)
	link = func(s *step, deps []runtime.Address, seen map[runtime.Address]bool) {
		for _, dep := range deps {
			if seen[dep] {
				continue
			}
			seen[dep] = true
			if d, ok := upByAddr[dep]; ok {
				s.after = append(s.after, d)
			} else if it, ok := declared[dep]; ok {
				link(s, it.res.DependsOn, seen)
			}
		}
	}
	for _, s := range upserts {
		link(s, s.item.res.DependsOn, map[runtime.Address]bool{})
	}
	runSteps(ctx, upserts, e.slots(), e.runUpsert)
	steps := append(deletes, upserts...)
	e.Out.recap(c.items, steps)
	return e.Out.summary(steps)
}

func (e *Engine) slots() *slots {
	hosts := e.HostParallel
	if hosts == 0 {
		hosts = e.Parallel
	}
	return newSlots(e.Parallel, hosts)
}

// recover records an object that a driver recognised as the script's own
// although the state had lost it.
func (e *Engine) recover(it *item) {
	if it.entry != nil || it.change.Recovered == nil {
		return
	}
	en := it.change.Recovered
	fillEntry(en, it)
	if err := e.State.Put(en); err != nil {
		e.Out.Notef(it.address(), "could not record it in the state: %v", err)
	}
}

// containerStep returns the deletion of the object that holds s's object
// and takes it along, when both are deleted (or replaced) in this run.
func containerStep(s *step, byAddr map[runtime.Address]*step) *step {
	ct, ok := s.item.driver.(Container)
	if !ok {
		return nil
	}
	addr, ok := ct.ContainerOf(s.item.entry)
	if !ok {
		return nil
	}
	return byAddr[addr] // a deletion or a replace's
}

func (e *Engine) runDelete(s *step) error {
	it := s.item
	start := time.Now()
	e.Out.started(it, Delete)
	if s.container != nil {
		e.Out.Notef(it.address(), "gone with %s", s.container.item.address())
	} else if err := it.driver.Delete(context.Background(), it.entry, e.Out); err != nil {
		e.Out.finished(it, Delete, start, err)
		return err
	}
	err := e.State.Remove(it.address())
	e.Out.finished(it, Delete, start, err)
	return err
}

func (e *Engine) runUpsert(s *step) error {
	it := s.item
	c := *it.change
	if c.Action == Replace {
		c.Action = Create
	}
	start := time.Now()
	if c.Action == NoOp {
		e.Out.finished(it, NoOp, start, nil)
		return nil
	}
	e.Out.started(it, c.Action)
	if c.Action == Create {
		// Recorded before it exists: a run killed now leaves an entry that
		// the next run finishes or deletes, never an orphan.
		pendingEntry := &Entry{Incomplete: true}
		fillEntry(pendingEntry, it)
		if err := e.State.Put(pendingEntry); err != nil {
			e.Out.finished(it, c.Action, start, err)
			return err
		}
	}
	en, err := it.driver.Apply(context.Background(), it.res, &c, e.Out)
	if errors.Is(err, ErrUnchanged) {
		s.unchanged = true
		if c.Action == Create {
			err = e.State.Remove(it.address()) // the entry recorded before
		} else {
			err = nil // the state keeps what it recorded
		}
		e.Out.finished(it, NoOp, start, err)
		return err
	}
	if err == nil {
		if en == nil {
			err = e.State.Remove(it.address())
		} else {
			en.Incomplete = false
			fillEntry(en, it)
			err = e.State.Put(en)
		}
	}
	e.Out.finished(it, c.Action, start, err)
	return err
}

// fillEntry completes what a driver left empty of an entry.
func fillEntry(en *Entry, it *item) {
	r := it.res
	if en.Address == "" {
		en.Address = r.Address
	}
	if en.Kind == "" {
		en.Kind = r.Kind()
	}
	if en.Name == "" {
		en.Name = r.Name
	}
	if en.DependsOn == nil {
		en.DependsOn = r.DependsOn
	}
	if en.Spec == nil {
		en.Spec = it.attrs
	}
	if en.ID == "" && it.entry != nil {
		en.ID = it.entry.ID
	}
	// The hypervisor a resource is placed on, from drivers that span
	// several (also for the entry recorded before a creation starts).
	if h, ok := it.driver.(interface {
		HypervisorOf(*runtime.Resource) string
	}); ok && en.Hypervisor == "" && r != nil {
		en.Hypervisor = h.HypervisorOf(r)
	}
}
