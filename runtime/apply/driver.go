// Package apply is the apply engine: it asks each module's driver how the
// real objects differ from the plan, shows the changes Terraform-style,
// and makes them in dependency order, in parallel where the graph allows,
// recording what the script owns in its state file.
package apply

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/studiorun/studiorun/runtime"
)

// Action is what applying does to one resource.
type Action int

// The actions, in the order of their symbols' strength.
const (
	NoOp    Action = iota // the object matches its declaration
	Create                // +   the object does not exist
	Update                // ~   changed in place
	Replace               // -/+ deleted and created again
	Delete                // -   owned, no longer declared
)

// Symbol returns the Terraform-style mark of the action.
func (a Action) Symbol() string {
	return [...]string{" ", "+", "~", "-/+", "-"}[a]
}

// String returns the action's name as the JSON events spell it.
func (a Action) String() string {
	return [...]string{"no-op", "create", "update", "replace", "delete"}[a]
}

// AttrChange is one attribute that differs between the real object and the
// declaration.
type AttrChange struct {
	Name string `json:"name"`
	Old  string `json:"old,omitempty"` // as the plan renders values; "" when absent
	New  string `json:"new,omitempty"`
	// ForcesReplace marks the attribute that makes an update a replace.
	ForcesReplace bool `json:"forces_replace,omitempty"`
	// Note says more, such as "takes effect at next boot".
	Note string `json:"note,omitempty"`
	// Diff is the unified diff of a file's content, shown with --diff.
	Diff string `json:"diff,omitempty"`
}

// Change is the difference a driver found for one resource.
type Change struct {
	Address runtime.Address `json:"address"`
	Action  Action          `json:"-"`
	Attrs   []AttrChange    `json:"attributes,omitempty"`
	// Driver-private data carried from Diff to Apply (what it read), never
	// rendered.
	Private any `json:"-"`
	// Recovered, on a NoOp change, is the entry of an object that the state
	// did not record but that the driver recognised as the script's own
	// (libvirt metadata naming this address): the engine records it.
	Recovered *Entry `json:"-"`
}

// Entry is what the state records of an object the script owns: enough
// for a driver to find and delete it after its declaration is gone.
type Entry struct {
	Address   runtime.Address   `json:"address"`
	Kind      string            `json:"kind"`
	Name      string            `json:"name"`
	ID        string            `json:"id,omitempty"` // the driver's identifier (a UUID, a key path)
	DependsOn []runtime.Address `json:"depends_on,omitempty"`
	// Spec is the resource's attributes when it was last applied, secrets
	// in their display form.
	Spec json.RawMessage `json:"spec"`
	// Incomplete marks an object whose creation started and did not finish:
	// the next run finishes or removes it.
	Incomplete bool `json:"incomplete,omitempty"`
	// Hypervisor is the libvirt URI the object was created on, so that its
	// deletion reaches that host whatever the declaration or --libvirt-uri
	// say later; "" for objects that are not on a hypervisor.
	Hypervisor string `json:"hypervisor,omitempty"`
}

// Reporter receives a driver's progress on long steps (an upload, a
// graceful shutdown), for the terminal or the JSON event stream.
type Reporter interface {
	// Progress reports done of total units (bytes) of a step; total 0 when
	// unknown.
	Progress(addr runtime.Address, step string, done, total int64)
	// Notef reports a line of information about a resource.
	Notef(addr runtime.Address, format string, args ...any)
}

// Driver reads and changes the real objects of one module's kinds.
// The engine calls Diff for every declared resource before any change,
// then Apply and Delete in dependency order, from several goroutines.
// For a Replace, the engine deletes the owned object first (Delete with its
// entry) and then calls Apply with the change's Action set to Create.
// Apply returning a nil entry records nothing (objects the script reads
// but does not own, such as existing_* kinds).
type Driver interface {
	// SetPlan gives the driver the plan before the first Diff, so that it
	// resolves the references between resources (an overlay's base volume)
	// whatever the order of the calls.
	SetPlan(p *runtime.Plan)
	// Diff compares the resource with the real object. owned is the state's
	// entry for it, or nil when the script has not created it: a driver
	// refuses (with an error naming the object) to adopt or overwrite an
	// object that exists and that the script does not own. Objects that the
	// resource depends on may not exist yet when Diff runs (they are about
	// to be created): Diff then reports Create without failing.
	Diff(ctx context.Context, r *runtime.Resource, owned *Entry) (*Change, error)
	// Apply makes the change and returns the entry the state records, or
	// ErrUnchanged when it found nothing to change after all.
	Apply(ctx context.Context, r *runtime.Resource, c *Change, rep Reporter) (*Entry, error)
	// Delete removes an owned object; a missing object is not an error.
	Delete(ctx context.Context, e *Entry, rep Reporter) error
	// Close releases the driver's connections.
	Close() error
}

// Container is implemented by drivers whose objects of some kinds live
// inside another object and go with it (a DHCP reservation in its libvirt
// network). When both are deleted in one run (the container also as the
// first half of its replace), the engine deletes the container first and
// then only forgets the objects it held, instead of removing each from the
// container first; if the container's deletion fails, they stay, in the
// state as in the container.
type Container interface {
	// ContainerOf returns the address of the object that holds e's object,
	// or false when deleting that object does not delete e's.
	ContainerOf(e *Entry) (runtime.Address, bool)
}

// DependencyReplacer is implemented by drivers whose objects must change
// when an object they depend on is replaced: a DHCP reservation held by a
// network is made again in the new one, a running domain's NIC on it is
// plugged in again.
type DependencyReplacer interface {
	// DependencyReplaced adjusts c, the change planned for r (no change or
	// an update), for dep, which r depends on and which this run replaces.
	DependencyReplaced(r *runtime.Resource, c *Change, dep *runtime.Resource)
}

// ErrUnchanged is what Apply returns when, making the change, it found
// nothing to do after all (an earlier change on the host made it so, or a
// handler that nothing notified in this run): the engine reports the
// resource ok, not changed, and records nothing new.
var ErrUnchanged = errors.New("nothing to change after all")

// HostBound is implemented by the specs of resources applied on a host
// over SSH (the host itself and its tasks). A host that cannot be read or
// changed fails its own resources only, never the other hosts', and the
// summary recaps each host as Ansible does.
type HostBound interface {
	// BoundHost returns the host's address; self is the resource's own.
	BoundHost(self runtime.Address) runtime.Address
}
