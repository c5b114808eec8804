package runtime

import (
	"container/heap"
	"strings"
)

// topoSort orders resources so that every resource follows its
// dependencies; among resources that are ready together, the smaller
// address comes first, so the order is the same on every run.
func topoSort(resources []*Resource, index map[Address]*Resource) ([]*Resource, error) {
	pending := make(map[Address]int, len(resources))
	dependents := make(map[Address][]*Resource, len(resources))
	ready := &addrHeap{}
	for _, r := range resources {
		pending[r.Address] = len(r.DependsOn)
		for _, d := range r.DependsOn {
			dependents[d] = append(dependents[d], r)
		}
		if len(r.DependsOn) == 0 {
			heap.Push(ready, r)
		}
	}
	out := make([]*Resource, 0, len(resources))
	for ready.Len() > 0 {
		r := heap.Pop(ready).(*Resource)
		out = append(out, r)
		for _, dep := range dependents[r.Address] {
			pending[dep.Address]--
			if pending[dep.Address] == 0 {
				heap.Push(ready, dep)
			}
		}
	}
	if len(out) < len(resources) {
		return nil, cycleError(resources, pending, index)
	}
	return out, nil
}

// cycleError describes one dependency cycle among the resources that
// topoSort could not order.
func cycleError(resources []*Resource, pending map[Address]int, index map[Address]*Resource) error {
	var start *Resource
	for _, r := range resources {
		if pending[r.Address] > 0 && (start == nil || r.Address < start.Address) {
			start = r
		}
	}
	// Walk unresolved dependencies until an address repeats.
	seen := map[Address]int{}
	var path []Address
	for r := start; ; {
		if i, ok := seen[r.Address]; ok {
			path = append(path[i:], r.Address)
			break
		}
		seen[r.Address] = len(path)
		path = append(path, r.Address)
		for _, d := range r.DependsOn { // sorted: the walk is deterministic
			if pending[d] > 0 {
				r = index[d]
				break
			}
		}
	}
	names := make([]string, len(path))
	for i, a := range path {
		names[i] = string(a)
	}
	return &Error{Pos: start.Pos, Msg: "dependency cycle: " + strings.Join(names, " -> ")}
}

type addrHeap []*Resource

func (h addrHeap) Len() int           { return len(h) }
func (h addrHeap) Less(i, j int) bool { return h[i].Address < h[j].Address }
func (h addrHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *addrHeap) Push(x any)        { *h = append(*h, x.(*Resource)) }
func (h *addrHeap) Pop() any {
	old := *h
	r := old[len(old)-1]
	*h = old[:len(old)-1]
	return r
}

// Edges calls fn for every dependency edge of the plan, in plan order.
func (p *Plan) Edges(fn func(from, to *Resource)) {
	for _, r := range p.Resources {
		for _, d := range r.DependsOn {
			fn(p.index[d], r)
		}
	}
}
