package runtime

import (
	"fmt"
	"strings"

	"go.starlark.net/starlark"
)

// Ref is the Starlark value a constructor returns for the resource it
// declared. Passing it to another constructor makes a dependency.
type Ref struct{ res *Resource }

var _ starlark.HasAttrs = (*Ref)(nil)

// NewRef returns a reference to r.
func NewRef(r *Resource) *Ref { return &Ref{res: r} }

// Referent is implemented by every value that stands for a declared
// resource (a *Ref, an ssh host).
type Referent interface {
	starlark.Value
	Resource() *Resource
}

// Resource returns the referenced resource.
func (r *Ref) Resource() *Resource { return r.res }

// String returns the address.
func (r *Ref) String() string { return string(r.res.Address) }

// Type returns the resource's kind, for example "libvirt.volume".
func (r *Ref) Type() string { return r.res.Kind() }

// Freeze does nothing: references are immutable.
func (r *Ref) Freeze() {}

// Truth is always true.
func (r *Ref) Truth() starlark.Bool { return true }

// Hash hashes the address.
func (r *Ref) Hash() (uint32, error) { return starlark.String(r.res.Address).Hash() }

// Attr exposes the address, kind and name.
func (r *Ref) Attr(name string) (starlark.Value, error) { return refAttr(r.res, name) }

// AttrNames lists the attributes.
func (r *Ref) AttrNames() []string { return refAttrNames }

var refAttrNames = []string{"address", "kind", "name"}

func refAttr(r *Resource, name string) (starlark.Value, error) {
	switch name {
	case "address":
		return starlark.String(r.Address), nil
	case "kind":
		return starlark.String(r.Kind()), nil
	case "name":
		return starlark.String(r.Name), nil
	}
	return nil, nil
}

// RefAttr is the attribute lookup that values wrapping a resource share.
func RefAttr(r *Resource, name string) (starlark.Value, error) { return refAttr(r, name) }

// RefAttrNames lists the attributes that RefAttr serves.
func RefAttrNames() []string { return append([]string(nil), refAttrNames...) }

// UnpackRef returns the resource that v refers to, which must be of one of
// the given kinds. what names the argument in the error.
func UnpackRef(fn, what string, v starlark.Value, kinds ...string) (*Resource, error) {
	if ref, ok := v.(Referent); ok {
		r := ref.Resource()
		for _, k := range kinds {
			if r.Kind() == k {
				return r, nil
			}
		}
		return nil, fmt.Errorf("%s: %s: got %s, want %s", fn, what, r.Address, strings.Join(kinds, " or "))
	}
	return nil, fmt.Errorf("%s: %s: got %s, want a reference returned by %s", fn, what, v.Type(), strings.Join(kinds, " or "))
}
