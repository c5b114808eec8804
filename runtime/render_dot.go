package runtime

import (
	"bufio"
	"fmt"
	"io"
)

// RenderDOT writes the dependency graph in Graphviz's DOT language: one
// node per resource, an edge from each dependency to its dependent.
func (p *Plan) RenderDOT(w io.Writer) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "digraph %q {\n  rankdir = LR;\n  node [shape = box];\n", p.Script)
	for _, r := range p.Resources {
		fmt.Fprintf(bw, "  %q;\n", r.Address)
	}
	p.Edges(func(from, to *Resource) {
		fmt.Fprintf(bw, "  %q -> %q;\n", from.Address, to.Address)
	})
	bw.WriteString("}\n")
	return bw.Flush()
}
