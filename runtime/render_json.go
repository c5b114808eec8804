package runtime

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
)

// jsonPlan is the schema of `plan --offline --json`, documented in the README.
type jsonPlan struct {
	Script    string         `json:"script"`
	Vars      map[string]any `json:"vars"`
	Resources []jsonResource `json:"resources"`
}

type jsonResource struct {
	Address    Address         `json:"address"`
	Kind       string          `json:"kind"`
	Name       string          `json:"name"`
	DependsOn  []Address       `json:"depends_on"`
	Attributes json.RawMessage `json:"attributes"`
}

// Attributes returns the JSON encoding of the resource's spec, with
// secrets in their display form.
func (r *Resource) Attributes() (json.RawMessage, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(r.Spec); err != nil {
		return nil, fmt.Errorf("encode %s: %w", r.Address, err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// RenderJSON writes the plan as indented JSON, the same bytes on every run.
func (p *Plan) RenderJSON(w io.Writer) error {
	out := jsonPlan{Script: p.Script, Vars: map[string]any{}, Resources: make([]jsonResource, len(p.Resources))}
	for _, v := range p.Vars {
		out.Vars[v.Name] = v.Value
	}
	for i, r := range p.Resources {
		attrs, err := r.Attributes()
		if err != nil {
			return err
		}
		deps := r.DependsOn
		if deps == nil {
			deps = []Address{}
		}
		out.Resources[i] = jsonResource{r.Address, r.Kind(), r.Name, deps, attrs}
	}
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}
