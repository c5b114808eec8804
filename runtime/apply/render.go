package apply

import (
	"bytes"
	"fmt"
	"strings"
)

// Changes shows what applying would do, Terraform-style: + create,
// ~ update in place, -/+ replace, - delete, with the attributes that
// differ (and the one that forces a replace); or one change event each.
func (o *Output) Changes(c *Changes) {
	var b strings.Builder
	for _, it := range c.items {
		ch := it.change
		if ch.Action == NoOp {
			continue
		}
		o.emitChange(it)
		if o.json {
			continue
		}
		fmt.Fprintf(&b, "\n  %s %s", ch.Action.Symbol(), ch.Address)
		switch ch.Action {
		case Create:
			var attrs bytes.Buffer
			if err := it.res.WriteAttributes(&attrs, "    "); err == nil {
				b.WriteString(" ")
				b.Write(attrs.Bytes())
			}
			b.WriteString("\n")
		case Delete:
			b.WriteString("\n")
		default:
			b.WriteString("\n")
			for _, a := range ch.Attrs {
				fmt.Fprintf(&b, "      ~ %s", a.Name)
				if a.Old != "" || a.New != "" {
					fmt.Fprintf(&b, ": %s -> %s", orNone(a.Old), orNone(a.New))
				}
				if a.ForcesReplace {
					b.WriteString("  # forces replacement")
				}
				note, more, _ := strings.Cut(a.Note, "\n")
				if note != "" {
					b.WriteString("  # " + note)
				}
				b.WriteString("\n")
				// A multi-line note, and with --diff a file's unified diff,
				// go below, indented.
				indent(&b, more)
				if o.diff {
					indent(&b, a.Diff)
				}
			}
		}
	}
	for _, it := range c.items {
		if it.failed != nil {
			o.emit(event{Type: "change", Address: it.address(), Status: "failed", Error: it.failed.Error()}, "")
			if !o.json {
				fmt.Fprintf(&b, "\n  ! %s: %v\n", it.address(), it.failed)
			}
		}
	}
	n := c.Counts()
	if c.Empty() {
		o.emit(event{Type: "plan", Counts: map[string]int{}}, "No changes: the real objects match the plan.\n")
		return
	}
	fmt.Fprintf(&b, "\nPlan: %d to create, %d to update, %d to replace, %d to delete.\n", n[Create], n[Update], n[Replace], n[Delete])
	o.emit(event{Type: "plan", Counts: map[string]int{
		"create": n[Create], "update": n[Update], "replace": n[Replace], "delete": n[Delete],
	}}, "studiorun will:\n"+b.String())
}

func (o *Output) emitChange(it *item) {
	if !o.json {
		return
	}
	attrs := it.change.Attrs
	if !o.diff {
		attrs = make([]AttrChange, len(it.change.Attrs))
		for i, a := range it.change.Attrs {
			a.Diff = ""
			attrs[i] = a
		}
	}
	o.emit(event{Type: "change", Address: it.address(), Action: it.change.Action.String(), Attrs: attrs}, "")
}

// indent writes text's lines below an attribute.
func indent(b *strings.Builder, text string) {
	if text == "" {
		return
	}
	for _, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		b.WriteString("          " + line + "\n")
	}
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}
