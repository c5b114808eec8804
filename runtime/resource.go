package runtime

import (
	"sort"
	"strings"

	"go.starlark.net/syntax"
)

// Address identifies a resource in a plan: "<module>.<kind>.<name>", for
// example "libvirt.domain.vfx-dev-001".
type Address string

// Kind returns the "<module>.<kind>" prefix of the address.
func (a Address) Kind() string {
	s := string(a)
	first := strings.IndexByte(s, '.')
	if first < 0 {
		return ""
	}
	second := strings.IndexByte(s[first+1:], '.')
	if second < 0 {
		return ""
	}
	return s[:first+1+second]
}

// Name returns the name part of the address, after "<module>.<kind>.".
func (a Address) Name() string {
	k := a.Kind()
	if k == "" {
		return ""
	}
	return string(a)[len(k)+1:]
}

// Spec is the typed desired state of one resource. Each module defines a
// struct per kind; its JSON encoding (field order, json tags) is the
// resource's attributes in every rendering of the plan.
type Spec interface {
	// Kind returns "<module>.<kind>", for example "libvirt.domain".
	Kind() string
}

// Resource is one declared object of the plan.
type Resource struct {
	Address   Address
	Name      string
	Spec      Spec
	DependsOn []Address       // sorted, without duplicates
	Pos       syntax.Position // where the script declared it
}

// Kind returns the resource's "<module>.<kind>".
func (r *Resource) Kind() string { return r.Spec.Kind() }

// Module returns the name of the module that declared the resource.
func (r *Resource) Module() string {
	k := r.Kind()
	if i := strings.IndexByte(k, '.'); i >= 0 {
		return k[:i]
	}
	return k
}

// addDependency records that r needs dep applied first.
func (r *Resource) addDependency(dep Address) {
	i := sort.Search(len(r.DependsOn), func(i int) bool { return r.DependsOn[i] >= dep })
	if i < len(r.DependsOn) && r.DependsOn[i] == dep {
		return
	}
	r.DependsOn = append(r.DependsOn, "")
	copy(r.DependsOn[i+1:], r.DependsOn[i:])
	r.DependsOn[i] = dep
}

// Var is a script variable with the value the evaluation used.
type Var struct {
	Name    string
	Doc     string
	Default any // Go value: string, int64, bool or []any
	Value   any
	Pos     syntax.Position
}

// Plan is the result of evaluating a script: its resources in a stable
// topological order (dependencies first, ties broken by address).
type Plan struct {
	Root      string // the project root, absolute; never rendered
	Script    string // the entry script, relative to the project root
	Vars      []*Var // sorted by name
	Resources []*Resource
	index     map[Address]*Resource
}

// Resource returns the resource with the given address, or nil.
func (p *Plan) Resource(addr Address) *Resource { return p.index[addr] }

// Modules returns the sorted names of the modules that declared resources.
func (p *Plan) Modules() []string {
	seen := map[string]bool{}
	var mods []string
	for _, r := range p.Resources {
		if m := r.Module(); !seen[m] {
			seen[m] = true
			mods = append(mods, m)
		}
	}
	sort.Strings(mods)
	return mods
}

// NameRule describes the names that ValidName accepts.
const NameRule = "want 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"

// ValidName reports whether s is a valid name for a libvirt object, a
// host or a named resource: it appears in addresses, file names and
// libvirt's object names.
func ValidName(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case i > 0 && (c == '.' || c == '_' || c == '-'):
		default:
			return false
		}
	}
	return true
}

// Only returns the plan of the resources that keep accepts, in the same
// order; dependencies on the resources left out are dropped.
func (p *Plan) Only(keep func(*Resource) bool) *Plan {
	out := &Plan{Root: p.Root, Script: p.Script, Vars: p.Vars, index: map[Address]*Resource{}}
	for _, r := range p.Resources {
		if keep(r) {
			out.index[r.Address] = r
		}
	}
	for _, r := range p.Resources {
		if out.index[r.Address] == nil {
			continue
		}
		kept := *r
		kept.DependsOn = nil
		for _, d := range r.DependsOn {
			if out.index[d] != nil {
				kept.DependsOn = append(kept.DependsOn, d)
			}
		}
		out.index[r.Address] = &kept
		out.Resources = append(out.Resources, &kept)
	}
	return out
}
