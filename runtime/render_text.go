package runtime

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"strings"
)

// RenderText writes the plan for people, Terraform-style: one block per
// resource in plan order, attributes in their spec's order, secrets shown
// as "(secret)". The bytes are the same on every run.
func (p *Plan) RenderText(w io.Writer) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "# studiorun plan: %s\n", p.Script)
	for _, v := range p.Vars {
		fmt.Fprintf(bw, "# var %s = %s\n", v.Name, mustJSON(v.Value))
	}
	fmt.Fprintf(bw, "# %d resources\n", len(p.Resources))
	for _, r := range p.Resources {
		fmt.Fprintf(bw, "\n# %s\n", r.Address)
		if len(r.DependsOn) > 0 {
			deps := make([]string, len(r.DependsOn))
			for i, d := range r.DependsOn {
				deps[i] = string(d)
			}
			fmt.Fprintf(bw, "# depends on %s\n", strings.Join(deps, ", "))
		}
		fmt.Fprintf(bw, "resource %q %q ", r.Kind(), r.Name)
		if err := r.writeAttributes(bw, ""); err != nil {
			return err
		}
		bw.WriteString("\n")
	}
	return bw.Flush()
}

// WriteAttributes writes the resource's attributes as the text rendering
// shows them, a { ... } block whose lines start with indent.
func (r *Resource) WriteAttributes(w io.Writer, indent string) error {
	bw := bufio.NewWriter(w)
	if err := r.writeAttributes(bw, indent); err != nil {
		return err
	}
	return bw.Flush()
}

func (r *Resource) writeAttributes(w *bufio.Writer, indent string) error {
	attrs, err := r.Attributes()
	if err != nil {
		return err
	}
	tree, err := decodeOrdered(attrs)
	if err != nil {
		return fmt.Errorf("render %s: %w", r.Address, err)
	}
	writeValue(w, tree, indent)
	return nil
}

// node is a decoded JSON value that keeps the order of object keys.
type node struct {
	scalar string // JSON text of a scalar; "" for objects and lists
	keys   []string
	fields []*node // object values, in key order
	items  []*node // list elements
	isList bool
}

func decodeOrdered(data []byte) (*node, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	return decodeNode(dec)
}

func decodeNode(dec *json.Decoder) (*node, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		n := &node{isList: t == '['}
		for dec.More() {
			if !n.isList {
				k, err := dec.Token()
				if err != nil {
					return nil, err
				}
				n.keys = append(n.keys, k.(string))
			}
			child, err := decodeNode(dec)
			if err != nil {
				return nil, err
			}
			if n.isList {
				n.items = append(n.items, child)
			} else {
				n.fields = append(n.fields, child)
			}
		}
		_, err := dec.Token() // closing delimiter
		return n, err
	case nil:
		return &node{scalar: "null"}, nil
	default:
		return &node{scalar: mustJSON(t)}, nil
	}
}

func (n *node) flat() bool {
	if n.scalar != "" {
		return true
	}
	if !n.isList {
		return len(n.keys) == 0
	}
	width := 0
	for _, it := range n.items {
		if it.scalar == "" {
			return false
		}
		width += len(it.scalar) + 2
	}
	return width < 72
}

func writeValue(w *bufio.Writer, n *node, indent string) {
	switch {
	case n.scalar != "" && isMultiline(n.scalar):
		writeHeredoc(w, n.scalar, indent)
	case n.scalar != "":
		w.WriteString(n.scalar)
	case n.isList && n.flat():
		w.WriteString("[")
		for i, it := range n.items {
			if i > 0 {
				w.WriteString(", ")
			}
			w.WriteString(it.scalar)
		}
		w.WriteString("]")
	case n.isList:
		w.WriteString("[\n")
		for _, it := range n.items {
			w.WriteString(indent + "  ")
			writeValue(w, it, indent+"  ")
			w.WriteString(",\n")
		}
		w.WriteString(indent + "]")
	case len(n.keys) == 0:
		w.WriteString("{}")
	default:
		width := 0
		for _, k := range n.keys {
			if !identifier.MatchString(k) {
				k = mustJSON(k)
			}
			width = max(width, len(k))
		}
		w.WriteString("{\n")
		for i, k := range n.keys {
			if !identifier.MatchString(k) {
				k = mustJSON(k)
			}
			fmt.Fprintf(w, "%s  %-*s = ", indent, width, k)
			writeValue(w, n.fields[i], indent+"  ")
			w.WriteString("\n")
		}
		w.WriteString(indent + "}")
	}
}

var identifier = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// isMultiline reports whether a JSON string holds several lines of text,
// which the text rendering shows as a heredoc.
func isMultiline(scalar string) bool {
	return strings.HasPrefix(scalar, `"`) && strings.Count(scalar, `\n`) > 1
}

// writeHeredoc writes a multi-line string as Terraform does:
// <<-EOT, the lines indented, EOT.
func writeHeredoc(w *bufio.Writer, scalar, indent string) {
	var text string
	if err := json.Unmarshal([]byte(scalar), &text); err != nil {
		w.WriteString(scalar)
		return
	}
	w.WriteString("<<-EOT\n")
	for _, line := range strings.SplitAfter(strings.TrimSuffix(text, "\n"), "\n") {
		if line = strings.TrimSuffix(line, "\n"); line != "" {
			w.WriteString(indent + "    " + line)
		}
		w.WriteString("\n")
	}
	if !strings.HasSuffix(text, "\n") {
		w.WriteString(indent + "    (no newline at end)\n")
	}
	w.WriteString(indent + "  EOT")
}

func mustJSON(v any) string {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return fmt.Sprintf("%q", fmt.Sprint(v))
	}
	return strings.TrimSuffix(buf.String(), "\n")
}
