package qemu

// The qemu driver: the image builder behind qemu.image. Diff compares the
// inputs hash in the manifest beside the image with the hash of the
// declared inputs; Apply runs the build steps (steps.go, step_*.go);
// Delete removes the image and its manifest.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/studiorun/studiorun/builtins/internal/kvm"
	"github.com/studiorun/studiorun/runtime"
	"github.com/studiorun/studiorun/runtime/apply"
)

// Provisioner runs the tasks that an image's provision role declared on
// its build host (host, an ssh.host whose BuildOf is the image) against
// the build VM, reachable over SSH at addr:port. The CLI implements it
// with the SSH driver.
type Provisioner interface {
	Provision(ctx context.Context, host runtime.Address, addr string, port int, rep apply.Reporter) error
}

// Options configure the image builder.
type Options struct {
	// Force rebuilds images whose inputs are unchanged (the CLI has no
	// --force flag yet).
	Force bool
	// Provisioner runs provisioning tasks; an image that has some fails
	// without one.
	Provisioner Provisioner
	// CacheDir holds downloaded ISOs, by checksum; default
	// $STUDIORUN_CACHE, else ~/.cache/studiorun.
	CacheDir string
	// QemuSystem and QemuImg are the programs; default from $PATH.
	QemuSystem, QemuImg string
	// Tools replaces the programs (tests).
	Tools Tools
}

func (o *Options) cacheDir() string {
	if o.CacheDir != "" {
		return o.CacheDir
	}
	if d := os.Getenv("STUDIORUN_CACHE"); d != "" {
		return d
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".cache", "studiorun")
	}
	return filepath.Join(os.TempDir(), "studiorun-cache")
}

// Driver implements apply.Driver for qemu.image. It is safe for
// concurrent use.
type Driver struct {
	root  string
	opts  Options
	tools Tools

	kvmOnce sync.Once
	kvmSeen kvm.Status

	mu        sync.Mutex
	plan      *runtime.Plan
	replacing map[runtime.Address]bool // Diff said Replace
}

var _ apply.Driver = (*Driver)(nil)

// NewDriver returns the image builder; root is the project root, against
// which relative paths of the specs are read.
func NewDriver(root string, opts Options) *Driver {
	d := &Driver{root: root, opts: opts, tools: opts.Tools, replacing: map[runtime.Address]bool{}}
	if d.tools == nil {
		d.tools = newExecTools(opts.QemuSystem, opts.QemuImg)
	}
	return d
}

// SetPlan implements apply.Driver: the provisioning tasks of an image are
// the plan's resources on its build host.
func (d *Driver) SetPlan(p *runtime.Plan) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.plan = p
}

// tasks returns the resources declared on the build host of spec (the
// host itself included), in plan order.
func (d *Driver) tasks(spec *Image) []*runtime.Resource {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.plan == nil || spec.ProvisionHost == "" {
		return nil
	}
	var out []*runtime.Resource
	for _, r := range d.plan.Resources {
		if r.Address == spec.ProvisionHost {
			out = append(out, r)
			continue
		}
		for _, dep := range r.DependsOn {
			if dep == spec.ProvisionHost {
				out = append(out, r)
				break
			}
		}
	}
	return out
}

// diffState is what Diff read, handed to Apply.
type diffState struct {
	inputs *inputs
	prev   *manifest
}

func imageSpec(r *runtime.Resource) (*Image, error) {
	spec, ok := r.Spec.(*Image)
	if !ok {
		return nil, fmt.Errorf("%s: the qemu driver builds qemu.image, not %s", r.Address, r.Kind())
	}
	return spec, nil
}

// Diff implements apply.Driver.
func (d *Driver) Diff(ctx context.Context, r *runtime.Resource, owned *apply.Entry) (*apply.Change, error) {
	spec, err := imageSpec(r)
	if err != nil {
		return nil, err
	}
	image := filepath.Join(resolvePath(d.root, spec.OutputDir), spec.OutputFile)
	shown := filepath.Join(spec.OutputDir, spec.OutputFile)
	prev, err := readManifest(manifestPath(image))
	if err != nil {
		return nil, err
	}
	_, statErr := os.Stat(image)
	exists := statErr == nil
	if exists && prev == nil && owned == nil {
		return nil, fmt.Errorf("%s: %s exists and has no manifest (%s.json): studiorun did not build it; move it away or change output_dir", r.Address, shown, shown)
	}
	var prevInputs *inputs
	if prev != nil {
		prevInputs = prev.Inputs
	}
	in, err := computeInputs(r, spec, d.tasks(spec), func(p string) string { return resolvePath(d.root, p) }, prevInputs)
	if err != nil {
		if spec.Source == "disk" && os.IsNotExist(err) {
			// The base image may be made by a resource of the plan.
			return &apply.Change{Address: r.Address, Action: apply.Create, Private: &diffState{prev: prev},
				Attrs: []apply.AttrChange{{Name: "image", New: shown, Note: "base_image does not exist yet"}}}, nil
		}
		return nil, fmt.Errorf("%s: %w", r.Address, err)
	}
	c := &apply.Change{Address: r.Address, Private: &diffState{inputs: in, prev: prev}}
	switch {
	case !exists || prev == nil:
		c.Action = apply.Create
		c.Attrs = []apply.AttrChange{{Name: "image", New: shown}}
	case prev.InputsHash == in.Hash() && !d.opts.Force:
		c.Action = apply.NoOp
		if owned == nil {
			c.Recovered = d.entry(r, spec)
		}
	default:
		c.Action = apply.Replace
		note := "inputs changed: " + strings.Join(in.changed(prev.Inputs), ", ")
		if prev.InputsHash == in.Hash() {
			note = "rebuild forced"
		}
		c.Attrs = []apply.AttrChange{{Name: "inputs_hash", Old: prev.InputsHash, New: in.Hash(), ForcesReplace: true, Note: note}}
		d.mu.Lock()
		d.replacing[r.Address] = true
		d.mu.Unlock()
	}
	return c, nil
}

// entry is what the state records of an image.
func (d *Driver) entry(r *runtime.Resource, spec *Image) *apply.Entry {
	data, _ := json.Marshal(spec)
	return &apply.Entry{
		Address: r.Address, Kind: r.Kind(), Name: r.Name,
		ID: filepath.Join(spec.OutputDir, spec.OutputFile), DependsOn: r.DependsOn, Spec: data,
	}
}

// Apply implements apply.Driver: it builds the image.
func (d *Driver) Apply(ctx context.Context, r *runtime.Resource, c *apply.Change, rep apply.Reporter) (*apply.Entry, error) {
	spec, err := imageSpec(r)
	if err != nil {
		return nil, err
	}
	st, _ := c.Private.(*diffState)
	if st == nil || st.inputs == nil {
		// Diff could not hash the inputs (the base image was missing).
		var prev *inputs
		if st != nil && st.prev != nil {
			prev = st.prev.Inputs
		}
		in, err := computeInputs(r, spec, d.tasks(spec), func(p string) string { return resolvePath(d.root, p) }, prev)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", r.Address, err)
		}
		st = &diffState{inputs: in}
	}
	b := d.newBuild(r, spec, rep)
	b.inputs = st.inputs
	if err := d.build(ctx, b); err != nil {
		return nil, err
	}
	return d.entry(r, spec), nil
}

// newBuild returns the build of image r.
func (d *Driver) newBuild(r *runtime.Resource, spec *Image, rep apply.Reporter) *build {
	b := &build{
		addr: r.Address, name: r.Name, spec: spec, root: d.root, rep: rep,
		tools: d.tools, opts: &d.opts, probeKVM: d.kvmStatus,
	}
	for _, t := range d.tasks(spec) {
		if t.Address != spec.ProvisionHost {
			b.tasks = append(b.tasks, t)
		}
	}
	return b
}

// build runs the steps of an image build and publishes the image.
func (d *Driver) build(ctx context.Context, b *build) error {
	if len(b.tasks) > 0 && d.opts.Provisioner == nil {
		return fmt.Errorf("%s: its provision role declares %d tasks on %s, and this studiorun has no SSH provisioner to run them", b.addr, len(b.tasks), b.spec.ProvisionHost)
	}
	b.started = time.Now()
	out := &stepOutput{}
	steps := []step{out, stepSource{}, stepNetwork{}, &stepHTTP{}, &stepLaunch{}, stepBootCommand{}, stepSSH{}, stepProvision{}, stepSeal{}, stepShutdown{}, stepConvert{}, stepManifest{}}
	err := runSteps(ctx, b, append(steps, publishStep{out}))
	if err != nil {
		return fmt.Errorf("%s: %w", b.addr, err)
	}
	b.rep.Notef(b.addr, "built %s in %s: %s", filepath.Join(b.spec.OutputDir, b.spec.OutputFile), seconds(time.Since(b.started)), breakdown(b.timings))
	return nil
}

// publishStep moves the image and its manifest into output_dir, once
// every other step has succeeded.
type publishStep struct{ out *stepOutput }

func (publishStep) name() string                            { return "publish the image" }
func (p publishStep) run(_ context.Context, b *build) error { return p.out.publish(b) }
func (publishStep) cleanup(*build)                          {}

// kvmStatus probes KVM once per driver. The probe has its own timeout and
// ignores ctx: a build cancelled during the probe must not leave the
// verdict "does not work" for the others.
func (d *Driver) kvmStatus(context.Context) kvm.Status {
	d.kvmOnce.Do(func() {
		system := d.opts.QemuSystem
		if system == "" {
			system = "qemu-system-x86_64"
		}
		d.kvmSeen = kvm.Probe(context.Background(), system)
	})
	return d.kvmSeen
}

// kvmStatus asks the driver's probe.
func (b *build) kvmStatus(ctx context.Context) kvm.Status {
	if b.spec.Accelerator == "tcg" || b.probeKVM == nil {
		return kvm.Status{Reason: "not probed"}
	}
	return b.probeKVM(ctx)
}

// Delete implements apply.Driver: it removes the image and its manifest.
// The delete that starts a Replace keeps them: the new build publishes its
// image over the old one with a rename, so a rebuild that fails leaves the
// previous image in place (the next Diff offers the rebuild again).
func (d *Driver) Delete(_ context.Context, e *apply.Entry, rep apply.Reporter) error {
	if e.ID == "" {
		return nil
	}
	d.mu.Lock()
	replacing := d.replacing[e.Address]
	delete(d.replacing, e.Address)
	d.mu.Unlock()
	if replacing {
		rep.Notef(e.Address, "keeping %s until the rebuilt image replaces it", e.ID)
		return nil
	}
	image := resolvePath(d.root, e.ID)
	for _, p := range []string{manifestPath(image), image, image + ".serial.log"} {
		if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("%s: %w", e.Address, err)
		}
	}
	rep.Notef(e.Address, "removed %s", e.ID)
	return nil
}

// Close implements apply.Driver.
func (d *Driver) Close() error { return nil }
