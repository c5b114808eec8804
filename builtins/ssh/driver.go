package ssh

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/studiorun/studiorun/runtime"
	"github.com/studiorun/studiorun/runtime/apply"
)

// Options configure the ssh driver.
type Options struct {
	// KnownHosts is the known_hosts file (default ~/.ssh/known_hosts).
	KnownHosts string
	// AcceptNewHostKeys records the key of a host that known_hosts does not
	// know instead of refusing it. A changed key is always refused.
	AcceptNewHostKeys bool
	// Out receives progress when Diff connects (waiting for SSH); Apply
	// reports to the Reporter the engine passes. nil: none.
	Out apply.Reporter
	// ConnectTimeout is how long a host may take to accept SSH (guests
	// still booting); default 2 minutes.
	ConnectTimeout time.Duration
	// Parallel bounds the hosts connected and checked at once; default 16.
	Parallel int
}

// Driver applies the tasks of ssh.host values (and the composite tasks of
// package nfs) over one SSH connection per host. It implements
// apply.Driver for ssh.host, ssh.inventory, every ssh.<task> kind,
// nfs.export and nfs.mount.
//
// Diff is check mode: at the first Diff of a host the driver connects,
// gathers the host's facts (one round trip) and runs one check script that
// prints the state of every task of the host (one round trip); each Diff
// is then answered from that. Apply changes what differs, in one round
// trip for the first change of a host and two (check again, change) after
// an earlier change on the same host. Tasks are not owned objects: Apply
// records nothing and Delete does nothing.
type Driver struct {
	opts       Options
	knownHosts string
	sem        chan struct{}

	mu    sync.Mutex
	plan  *runtime.Plan
	hosts map[runtime.Address]*hostRun

	rootMu sync.Mutex
	root   string // the plan's project root

	// The tasks that Diff found to change, and the outcome of those applied
	// (nil: succeeded), under doneMu; doneCond signals each outcome.
	doneMu   sync.Mutex
	doneCond *sync.Cond
	pending  map[runtime.Address]bool
	done     map[runtime.Address]error
	changed  map[runtime.Address]bool // the tasks applied that changed their host (for handlers)
}

// hostRun is the driver's work on one host: its connection, facts and
// checked state.
type hostRun struct {
	addr  runtime.Address
	spec  *HostSpec
	tasks []*runtime.Resource // in the plan's order

	mu      sync.Mutex
	address string // at apply time (BuildOf hosts: from the image builder)
	port    int
	conn    *conn
	checked bool
	err     error // connecting, gathering facts or checking failed
	probes  map[runtime.Address][]Probe
	steps   map[runtime.Address][]Step
	stepErr map[runtime.Address]error
	dirty   bool // a change was applied since the check
	// next holds the probes of the task to apply next, read by the script
	// of the latest change after its changes (nil: none).
	next         *nextProbes
	addressLater bool // a build VM whose address is not known yet
}

// NewDriver returns the ssh driver.
func NewDriver(opts Options) *Driver {
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = 2 * time.Minute
	}
	if opts.Parallel <= 0 {
		opts.Parallel = 16
	}
	kh := opts.KnownHosts
	if kh == "" {
		kh = "~/.ssh/known_hosts"
	}
	if p, err := expandHome(kh); err == nil {
		kh = p
	}
	if abs, err := filepath.Abs(kh); err == nil {
		kh = abs
	}
	d := &Driver{opts: opts, knownHosts: kh, sem: make(chan struct{}, opts.Parallel), hosts: map[runtime.Address]*hostRun{},
		pending: map[runtime.Address]bool{}, done: map[runtime.Address]error{}, changed: map[runtime.Address]bool{}}
	d.doneCond = sync.NewCond(&d.doneMu)
	return d
}

// SetPlan implements apply.Driver: it learns every host and its tasks.
func (d *Driver) SetPlan(p *runtime.Plan) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.plan = p
	d.rootMu.Lock()
	d.root = p.Root
	d.rootMu.Unlock()
	for _, h := range d.hosts {
		h.tasks, h.checked, h.err, h.dirty, h.next = nil, false, nil, false, nil
	}
	for _, r := range p.Resources {
		if hs, ok := r.Spec.(*HostSpec); ok {
			h := d.hosts[r.Address]
			if h == nil {
				h = &hostRun{addr: r.Address, address: hs.Address, port: hs.Port}
				d.hosts[r.Address] = h
			}
			h.spec = hs
			h.addressLater = hs.BuildOf != "" && h.address == ""
		}
	}
	for _, r := range p.Resources {
		if t, ok := r.Spec.(Task); ok {
			if h := d.hosts[t.TaskHost()]; h != nil {
				h.tasks = append(h.tasks, r)
			}
		}
	}
}

func (d *Driver) projectRoot() string {
	d.rootMu.Lock()
	defer d.rootMu.Unlock()
	return d.root
}

// SetAddress gives a host its address when it is known only at apply
// time: the qemu image builder calls it with its build VM's forwarded SSH
// address before the provision tasks run.
func (d *Driver) SetAddress(host runtime.Address, address string, port int) {
	d.mu.Lock()
	h := d.hosts[host]
	if h == nil {
		h = &hostRun{addr: host}
		d.hosts[host] = h
	}
	d.mu.Unlock()
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.conn != nil && (h.address != address || h.port != port) {
		h.conn.close()
		h.conn = nil
	}
	h.checked, h.err, h.dirty, h.next = false, nil, false, nil
	h.address, h.port, h.addressLater = address, port, false
}

// Provision applies, in order, every task of a host whose address is
// known only at apply time (the build VM of a qemu.image, reachable at
// address:port), reporting each task's outcome; it implements the image
// builder's Provisioner. The engine does not apply those tasks itself:
// their Diff is a no-op, the image's own change being their run. The
// connection is closed at the end (the VM shuts down next).
func (d *Driver) Provision(ctx context.Context, host runtime.Address, address string, port int, rep apply.Reporter) error {
	d.SetAddress(host, address, port)
	h, err := d.host(host)
	if err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	defer func() {
		if h.conn != nil {
			h.conn.close()
			h.conn = nil
		}
		h.checked = false
	}()
	for _, r := range h.tasks {
		changed, err := d.applyTask(ctx, h, r, rep)
		d.markChanged(r.Address, changed)
		d.record(r.Address, err)
		if err != nil {
			return fmt.Errorf("%s: %w", r.Address, err)
		}
		if rep != nil {
			if changed {
				rep.Notef(r.Address, "changed")
			} else {
				rep.Notef(r.Address, "ok")
			}
		}
	}
	return nil
}

func (d *Driver) host(addr runtime.Address) (*hostRun, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	h := d.hosts[addr]
	if h == nil || h.spec == nil {
		return nil, fmt.Errorf("host %s is not in the plan", addr)
	}
	return h, nil
}

// connect opens the host's connection and gathers its facts, once; the
// caller holds h.mu.
func (d *Driver) connect(ctx context.Context, h *hostRun, rep apply.Reporter) (*conn, error) {
	if h.conn != nil {
		return h.conn, nil
	}
	if h.address == "" {
		return nil, fmt.Errorf("%s has no address yet (the build VM of %s is not running)", h.addr.Name(), h.spec.BuildOf)
	}
	d.sem <- struct{}{}
	defer func() { <-d.sem }()
	client, err := d.dial(ctx, h.addr, h.spec, h.address, h.port, rep)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", h.addr.Name(), err)
	}
	c := &conn{client: client, spec: h.spec}
	out, err := c.exec(ctx, "sh -c "+Quote(factsScript), nil)
	if err != nil {
		client.Close()
		return nil, fmt.Errorf("%s: gather facts: %w", h.addr.Name(), err)
	}
	if c.facts, err = ParseFacts(out); err != nil {
		client.Close()
		return nil, fmt.Errorf("%s: %w", h.addr.Name(), err)
	}
	if h.spec.Become && !c.facts.Root && !c.facts.SudoNoPassword && h.spec.BecomePassword == nil {
		client.Close()
		return nil, fmt.Errorf("%s: become: %w", h.addr.Name(), errSudoPassword)
	}
	h.conn = c
	return c, nil
}

// check connects, gathers facts and checks every task of the host in one
// script, once; the caller holds h.mu.
func (d *Driver) check(ctx context.Context, h *hostRun, rep apply.Reporter) error {
	if h.checked {
		return h.err
	}
	h.checked = true
	c, err := d.connect(ctx, h, rep)
	if err != nil {
		h.err = err
		return err
	}
	h.steps = map[runtime.Address][]Step{}
	h.stepErr = map[runtime.Address]error{}
	h.probes = map[runtime.Address][]Probe{}
	var scripts []string
	type slot struct {
		addr runtime.Address
		n    int
	}
	var slots []slot
	for _, r := range h.tasks {
		steps, err := stepsOf(r.Spec.(Task), &c.facts)
		for i, st := range steps {
			// upload's src is relative to the project root.
			if u, ok := st.Task.(*Upload); ok && !filepath.IsAbs(u.Src) {
				cp := *u
				cp.Src = filepath.Join(d.projectRoot(), u.Src)
				steps[i].Task = &cp
			}
		}
		var probes []string
		if err == nil {
			probes, err = probeScripts(steps, &c.facts)
		}
		if err != nil {
			h.stepErr[r.Address] = err
			continue
		}
		h.steps[r.Address] = steps
		slots = append(slots, slot{r.Address, len(probes)})
		scripts = append(scripts, probes...)
	}
	out, err := c.run(ctx, buildCheck(scripts), nil)
	if err != nil {
		h.err = fmt.Errorf("%s: check: %w", h.addr.Name(), err)
		return h.err
	}
	probes, err := parseCheck(out, len(scripts))
	if err != nil {
		h.err = fmt.Errorf("%s: %w", h.addr.Name(), err)
		return h.err
	}
	i := 0
	for _, s := range slots {
		h.probes[s.addr] = probes[i : i+s.n]
		i += s.n
	}
	return nil
}

// Diff implements apply.Driver: check mode.
func (d *Driver) Diff(ctx context.Context, r *runtime.Resource, owned *apply.Entry) (*apply.Change, error) {
	switch spec := r.Spec.(type) {
	case *Inventory:
		return &apply.Change{Action: apply.NoOp}, nil
	case *HostSpec:
		h, err := d.host(r.Address)
		if err != nil {
			return nil, err
		}
		h.mu.Lock()
		defer h.mu.Unlock()
		if h.spec.BuildOf != "" {
			return &apply.Change{Action: apply.NoOp}, nil // checked by Provision
		}
		if err := d.check(ctx, h, d.opts.Out); err != nil {
			return nil, err
		}
		return &apply.Change{Action: apply.NoOp}, nil
	case Task:
		h, err := d.host(spec.TaskHost())
		if err != nil {
			return nil, err
		}
		h.mu.Lock()
		defer h.mu.Unlock()
		if h.spec.BuildOf != "" {
			// Applied by the image builder (Provision) while its build VM runs.
			return &apply.Change{Action: apply.NoOp}, nil
		}
		d.setPending(r.Address, true)
		if err := d.check(ctx, h, d.opts.Out); err != nil {
			// The host's own Diff reports the error, once.
			return &apply.Change{Action: apply.Update, Attrs: []apply.AttrChange{{Name: "host", Note: "unknown: " + h.addr.Name() + " could not be checked"}}}, nil
		}
		if err := h.stepErr[r.Address]; err != nil {
			return nil, err
		}
		if hd, ok := spec.(*Handler); ok {
			return d.diffHandler(h, r, hd)
		}
		decs, err := DecideSteps(h.steps[r.Address], &h.conn.facts, h.probes[r.Address])
		if err != nil {
			return nil, err
		}
		c := changeOf(h.steps[r.Address], decs)
		d.setPending(r.Address, c.Action != apply.NoOp)
		return c, nil
	}
	return nil, fmt.Errorf("the ssh driver does not handle %s", r.Kind())
}

// DecideSteps decides each step of a task from its probe; a step that
// runs only if others change does nothing when they do not.
func DecideSteps(steps []Step, f *HostFacts, probes []Probe) ([]*Decision, error) {
	decs := make([]*Decision, len(steps))
	for i, s := range steps {
		dec, err := Decide(s.Task, f, probes[i])
		if err != nil {
			if s.Label != "" {
				return nil, fmt.Errorf("%s: %w", s.Label, err)
			}
			return nil, err
		}
		if len(s.OnlyIfChanged) > 0 {
			triggered := false
			for _, j := range s.OnlyIfChanged {
				triggered = triggered || decs[j].Action != apply.NoOp
			}
			if !triggered {
				dec = noop("nothing it follows changed")
			}
		}
		decs[i] = dec
	}
	return decs, nil
}

// changeOf merges the decisions of a task's steps.
func changeOf(steps []Step, decs []*Decision) *apply.Change {
	c := &apply.Change{Action: apply.NoOp}
	for i, dec := range decs {
		if dec.Action == apply.NoOp {
			continue
		}
		if c.Action == apply.NoOp || dec.Action == apply.Update {
			c.Action = dec.Action
		}
		for _, a := range dec.Attrs {
			if steps[i].Label != "" {
				a.Name = steps[i].Label + "." + a.Name
			}
			c.Attrs = append(c.Attrs, a)
		}
		if dec.Pending != "" {
			c.Attrs = append(c.Attrs, apply.AttrChange{Name: "note", Note: "would change: " + dec.Pending})
		}
	}
	if len(decs) > 1 && c.Action == apply.Create {
		c.Action = apply.Update
	}
	return c
}

func (d *Driver) setPending(a runtime.Address, changes bool) {
	d.doneMu.Lock()
	defer d.doneMu.Unlock()
	d.pending[a] = changes
}

// result returns the outcome of an applied task (ok false: not applied).
func (d *Driver) result(a runtime.Address) (error, bool) {
	d.doneMu.Lock()
	defer d.doneMu.Unlock()
	err, ok := d.done[a]
	return err, ok
}

func (d *Driver) record(a runtime.Address, err error) {
	d.doneMu.Lock()
	defer d.doneMu.Unlock()
	d.done[a] = err
	d.doneCond.Broadcast()
}

// waitFor waits until a task of another host that this one depends on is
// applied, when it has changes to apply; its failure is returned.
func (d *Driver) waitFor(ctx context.Context, dep runtime.Address) error {
	d.doneMu.Lock()
	defer d.doneMu.Unlock()
	for d.pending[dep] {
		if err, ok := d.done[dep]; ok {
			if err != nil {
				return fmt.Errorf("not applied: %s failed", dep)
			}
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		d.doneCond.Wait()
	}
	return nil
}

// Apply implements apply.Driver: it makes a task's changes. Tasks are not
// owned: the entry is nil.
//
// A host's tasks run in the order of the script. The engine orders them
// through their dependency chain; where that chain passes through a task
// with nothing to change, the engine may start a later task first, so
// Apply first applies (here, in order) the earlier tasks of the host that
// have changes and have not run yet; the engine's own call for them then
// returns their outcome. A failed task fails the host's later tasks.
func (d *Driver) Apply(ctx context.Context, r *runtime.Resource, _ *apply.Change, rep apply.Reporter) (*apply.Entry, error) {
	spec, ok := r.Spec.(Task)
	if !ok {
		return nil, nil // ssh.host and ssh.inventory: nothing to make
	}
	h, err := d.host(spec.TaskHost())
	if err != nil {
		return nil, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if err, ok := d.result(r.Address); ok {
		return nil, d.outcome(r.Address, err)
	}
	for _, j := range h.tasks {
		if j.Address == r.Address {
			break
		}
		d.doneMu.Lock()
		pending := d.pending[j.Address]
		d.doneMu.Unlock()
		if !pending {
			continue
		}
		jerr, ran := d.result(j.Address)
		if !ran {
			jerr = d.applyRecorded(ctx, h, j, rep)
		}
		if jerr != nil {
			err := fmt.Errorf("not applied: %s failed", j.Address)
			d.record(r.Address, err)
			return nil, err
		}
	}
	return nil, d.outcome(r.Address, d.applyRecorded(ctx, h, r, rep))
}

// outcome is Apply's error for a task that ran: apply.ErrUnchanged when it
// found nothing to change after all.
func (d *Driver) outcome(a runtime.Address, err error) error {
	if err == nil && !d.changedInRun(a) {
		return apply.ErrUnchanged
	}
	return err
}

// applyRecorded applies a task after the tasks of other hosts it depends
// on, and records its outcome; the caller holds h.mu.
func (d *Driver) applyRecorded(ctx context.Context, h *hostRun, r *runtime.Resource, rep apply.Reporter) error {
	var err error
	for _, dep := range r.DependsOn {
		if dep == h.addr || d.onHost(dep, h) {
			continue
		}
		if err = d.waitFor(ctx, dep); err != nil {
			break
		}
	}
	if err == nil {
		var changed bool
		changed, err = d.applyTask(ctx, h, r, rep)
		d.markChanged(r.Address, changed)
	}
	d.record(r.Address, err)
	return err
}

func (d *Driver) onHost(a runtime.Address, h *hostRun) bool {
	for _, t := range h.tasks {
		if t.Address == a {
			return true
		}
	}
	return false
}

// applyTask checks a task again when an earlier change on the host may
// have changed its state, and makes its changes in one script; the caller
// holds h.mu.
func (d *Driver) applyTask(ctx context.Context, h *hostRun, r *runtime.Resource, rep apply.Reporter) (changed bool, err error) {
	if err := d.check(ctx, h, rep); err != nil {
		return false, err
	}
	if err := h.stepErr[r.Address]; err != nil {
		return false, err
	}
	if hd, ok := r.Spec.(*Handler); ok {
		return d.applyHandler(ctx, h, r, hd, rep)
	}
	steps, probes := h.steps[r.Address], h.probes[r.Address]
	switch {
	case !h.dirty:
	case h.next != nil && h.next.addr == r.Address:
		// Checked again by the script of the change before.
		probes = h.next.probes
	default:
		// An earlier change on this host: check this task again.
		scripts, err := probeScripts(steps, &h.conn.facts)
		if err != nil {
			return false, err
		}
		out, err := h.conn.run(ctx, buildCheck(scripts), nil)
		if err != nil {
			return false, fmt.Errorf("check: %w", err)
		}
		if probes, err = parseCheck(out, len(scripts)); err != nil {
			return false, err
		}
	}
	decs, err := DecideSteps(steps, &h.conn.facts, probes)
	if err != nil {
		return false, err
	}
	var script Script
	var stdin []io.Reader
	var secret []string
	earlier := false // an earlier step of the task changes: it may make what a later one needs
	for i, dec := range decs {
		if dec.Action == apply.NoOp {
			continue
		}
		if dec.Pending != "" && !earlier {
			return false, prefixLabel(steps[i].Label, errors.New(dec.Pending))
		}
		earlier = true
		// set -e holds in a subshell that is not the left side of || or &&.
		script.Add("( set -e")
		script.Append(dec.Script)
		fail := steps[i].Fail
		if fail == "" && steps[i].Label != "" {
			fail = steps[i].Label + " failed"
		}
		if fail == "" {
			script.Add(`); rc=$?; [ $rc = 0 ] || exit $rc`)
		} else {
			script.Add(`); rc=$?; [ $rc = 0 ] || { echo ` + Quote(fail) + ` >&2; exit $rc; }`)
		}
		switch {
		case dec.Upload != nil:
			// The file goes over SFTP now, before the script that installs
			// it; without SFTP it is streamed on the script's stdin. Small
			// contents (copy, template) stay inline (dec.Stdin): one round
			// trip.
			h.changing()
			in, done, uerr := h.conn.sendUpload(ctx, h.addr.Name(), r.Address, dec.Upload, rep)
			if uerr != nil {
				return false, uerr
			}
			defer func() { done(err != nil) }()
			stdin = append(stdin, in)
			// The script reads its stdin to EOF: one upload per script.
			if len(stdin) > 1 {
				return false, fmt.Errorf("a task may upload one file at a time")
			}
		case dec.Stdin != nil:
			stdin = append(stdin, bytes.NewReader(dec.Stdin))
			if len(stdin) > 1 {
				return false, fmt.Errorf("a task may write one file at a time")
			}
			if dec.secret {
				secret = append(secret, string(dec.Stdin))
			}
		}
	}
	if script.Empty() {
		return false, nil
	}
	var in io.Reader
	if len(stdin) == 1 {
		in = stdin[0]
	}
	h.changing()
	next, marker := d.probeNext(h, r.Address, &script)
	out, err := h.conn.run(ctx, script.String(), in)
	if err != nil {
		msg := err.Error()
		for _, s := range secret {
			for _, l := range strings.Split(s, "\n") {
				if len(l) >= 4 {
					msg = strings.ReplaceAll(msg, l, "(secret)")
				}
			}
		}
		return false, errors.New(msg)
	}
	if next != nil {
		if i := strings.LastIndex(out, marker+"\n"); i >= 0 {
			if next.probes, err = parseCheck(out[i+len(marker)+1:], len(h.steps[next.addr])); err == nil {
				h.next = next
			}
		}
	}
	return true, nil
}

// nextProbes are the probes of a host's task, read right after the change
// before it.
type nextProbes struct {
	addr   runtime.Address
	probes []Probe
}

// changing marks that a change is being made on the host: what the check
// read may no longer hold.
func (h *hostRun) changing() {
	h.dirty = true
	h.next = nil
}

// probeNext appends to the script of a change, after the change, the
// probes of the host's next task that has changes to make, behind a
// marker line: checking that task again then costs no round trip of its
// own. It returns the task (nil when there is none) and the marker.
func (d *Driver) probeNext(h *hostRun, after runtime.Address, script *Script) (*nextProbes, string) {
	var next *runtime.Resource
	seen := false
	for _, j := range h.tasks {
		if j.Address == after {
			seen = true
			continue
		}
		if !seen {
			continue
		}
		d.doneMu.Lock()
		_, ran := d.done[j.Address]
		pending := d.pending[j.Address] || h.spec.BuildOf != "" // a build VM applies every task
		d.doneMu.Unlock()
		if ran || !pending {
			continue
		}
		next = j
		break
	}
	if next == nil || h.stepErr[next.Address] != nil {
		return nil, ""
	}
	if _, ok := next.Spec.(*Handler); ok {
		return nil, ""
	}
	scripts, err := probeScripts(h.steps[next.Address], &h.conn.facts)
	if err != nil || len(scripts) == 0 {
		return nil, ""
	}
	marker := "@@studiorun-next-" + randomHex(24)
	script.Cmd("echo", marker)
	script.Add("( " + buildCheck(scripts) + ") </dev/null")
	return &nextProbes{addr: next.Address}, marker
}

// probeScripts returns the probe commands of each step.
func probeScripts(steps []Step, f *HostFacts) ([]string, error) {
	var scripts []string
	for _, s := range steps {
		p, err := ProbeScript(s.Task, f)
		if err != nil {
			return nil, err
		}
		scripts = append(scripts, p)
	}
	return scripts, nil
}

func prefixLabel(label string, err error) error {
	if label == "" {
		return err
	}
	return fmt.Errorf("%s: %w", label, err)
}

// Delete implements apply.Driver: tasks are not owned, nothing to delete.
func (d *Driver) Delete(context.Context, *apply.Entry, apply.Reporter) error { return nil }

// Close implements apply.Driver: it closes the connections.
func (d *Driver) Close() error {
	d.mu.Lock()
	hosts := make([]*hostRun, 0, len(d.hosts))
	for _, h := range d.hosts {
		hosts = append(hosts, h)
	}
	d.mu.Unlock()
	for _, h := range hosts {
		h.mu.Lock()
		if h.conn != nil {
			h.conn.close()
			h.conn = nil
		}
		h.checked = false
		h.mu.Unlock()
	}
	return nil
}

// progressReader reports an upload's progress.
type progressReader struct {
	r     io.Reader
	addr  runtime.Address
	rep   apply.Reporter
	step  string
	done  int64
	total int64
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.done += int64(n)
	if p.rep != nil && n > 0 {
		p.rep.Progress(p.addr, p.step, p.done, p.total)
	}
	return n, err
}
