package runtime

import (
	"fmt"

	"go.starlark.net/starlark"
	"go.starlark.net/syntax"
)

const builderKey = "studiorun.builder"

// Builder collects the resources that an evaluation declares. It travels on
// the entry script's thread; library files loaded with load() run without
// one, so that declaring a resource at their top level is an error.
type Builder struct {
	resources  []*Resource
	index      map[Address]*Resource
	claims     map[claimKey]*Resource
	locals     map[string]any
	finalizers []finalizer
}

type claimKey struct{ namespace, key string }

type finalizer struct {
	name string
	fn   func(*Builder) error
}

// NewBuilder returns an empty builder.
func NewBuilder() *Builder {
	return &Builder{
		index:  map[Address]*Resource{},
		claims: map[claimKey]*Resource{},
		locals: map[string]any{},
	}
}

// Attach makes the builder receive the declarations made on thread.
func (b *Builder) Attach(thread *starlark.Thread) { thread.SetLocal(builderKey, b) }

// BuilderOf returns the builder of thread. fn names the builtin asking, for
// the error raised when the thread is a library file's top level.
func BuilderOf(thread *starlark.Thread, fn string) (*Builder, error) {
	if b, ok := thread.Local(builderKey).(*Builder); ok {
		return b, nil
	}
	return nil, fmt.Errorf("%s: resources cannot be declared at the top level of library %s; declare them in a function that the entry script calls",
		fn, thread.Name)
}

// Declare adds a resource to the plan being built, at the position of the
// Starlark call that invoked fn, and returns it. The dependencies are those
// the caller knows of (references passed as arguments, implicit ones).
func Declare(thread *starlark.Thread, fn, name string, spec Spec, deps ...Address) (*Resource, error) {
	b, err := BuilderOf(thread, fn)
	if err != nil {
		return nil, err
	}
	return b.DeclareAt(fn, name, spec, CallerPos(thread), deps...)
}

// DeclareAt adds a resource to the plan being built at pos, for the
// declarations that a finish check (OnFinish) makes once the script has
// run, such as the handlers of ssh tasks: pos is then the position of the
// declaration they stem from.
func (b *Builder) DeclareAt(fn, name string, spec Spec, pos syntax.Position, deps ...Address) (*Resource, error) {
	addr := Address(spec.Kind() + "." + name)
	if prev, ok := b.index[addr]; ok {
		return nil, fmt.Errorf("%s: %s is already declared at %s", fn, addr, prev.Pos)
	}
	r := &Resource{Address: addr, Name: name, Spec: spec, Pos: pos}
	for _, d := range deps {
		if d != "" && d != addr {
			r.addDependency(d)
		}
	}
	b.resources = append(b.resources, r)
	b.index[addr] = r
	return r, nil
}

// CallerPos returns the position of the Starlark call to the running builtin.
func CallerPos(thread *starlark.Thread) syntax.Position {
	if thread.CallStackDepth() < 2 {
		return syntax.Position{}
	}
	return thread.CallFrame(1).Pos
}

// Claim reserves a unique key (a MAC address, an IP in a network) for r.
// Claiming a key that another resource holds returns that resource.
func (b *Builder) Claim(namespace, key string, r *Resource) (holder *Resource, ok bool) {
	k := claimKey{namespace, key}
	if h, taken := b.claims[k]; taken && h != r {
		return h, false
	}
	b.claims[k] = r
	return r, true
}

// Holder returns the resource that claimed a key, or nil.
func (b *Builder) Holder(namespace, key string) *Resource { return b.claims[claimKey{namespace, key}] }

// Resource returns the declared resource with the given address, or nil.
func (b *Builder) Resource(addr Address) *Resource { return b.index[addr] }

// Resources returns the resources declared so far, in declaration order.
func (b *Builder) Resources() []*Resource { return b.resources }

// Local returns the module state stored under key, creating it with init on
// first use. Modules keep per-evaluation bookkeeping here (for example the
// last task declared on each host).
func (b *Builder) Local(key string, init func() any) any {
	v, ok := b.locals[key]
	if !ok {
		v = init()
		b.locals[key] = v
	}
	return v
}

// OnFinish registers a check that runs once, under the given name, after the
// script has been evaluated: cross-resource validation that needs every
// declaration (a volume whose pool is declared later in the script).
func (b *Builder) OnFinish(name string, fn func(*Builder) error) {
	for _, f := range b.finalizers {
		if f.name == name {
			return
		}
	}
	b.finalizers = append(b.finalizers, finalizer{name, fn})
}

// AddDependency records that r must be applied after dep.
func (b *Builder) AddDependency(r *Resource, dep Address) { r.addDependency(dep) }

// Plan runs the finish checks and orders the declared resources.
func (b *Builder) Plan() (*Plan, error) {
	for _, f := range b.finalizers {
		if err := f.fn(b); err != nil {
			return nil, err
		}
	}
	for _, r := range b.resources {
		for _, d := range r.DependsOn {
			if b.index[d] == nil {
				return nil, &Error{Pos: r.Pos, Msg: fmt.Sprintf("%s depends on %s, which is not declared", r.Address, d)}
			}
		}
	}
	ordered, err := topoSort(b.resources, b.index)
	if err != nil {
		return nil, err
	}
	return &Plan{Resources: ordered, index: b.index}, nil
}
