package ssh

import (
	"bytes"
	"fmt"
	"text/template"

	"go.starlark.net/starlark"

	"github.com/studiorun/studiorun/runtime"
)

// renderTemplate renders the Go text/template text (from the file name)
// with values. A secret among the values makes the result secret, shown
// with "(secret)" in its place.
func renderTemplate(name, text string, values *starlark.Dict) (*Text, error) {
	tmpl, err := template.New(name).Option("missingkey=error").Parse(text)
	if err != nil {
		return nil, err // "template: <file>:<line>: ..."
	}
	var out [2]bytes.Buffer
	secret := false
	for i, reveal := range []bool{false, true} {
		data, err := templateData(values, reveal, &secret)
		if err != nil {
			return nil, err
		}
		if err := tmpl.Execute(&out[i], data); err != nil {
			return nil, err
		}
	}
	return &Text{shown: out[0].String(), value: out[1].String(), secret: secret}, nil
}

// templateData converts a Starlark value to the Go value a template sees;
// secrets become their display form, or their value with reveal.
func templateData(v starlark.Value, reveal bool, secret *bool) (any, error) {
	switch v := v.(type) {
	case runtime.Secret:
		*secret = true
		if reveal {
			return v.Reveal(), nil
		}
		return v.String(), nil
	case starlark.NoneType:
		return nil, nil
	case starlark.String:
		return string(v), nil
	case starlark.Bool:
		return bool(v), nil
	case starlark.Int:
		n, _ := v.Int64()
		return n, nil
	case *starlark.Dict:
		out := make(map[string]any, v.Len())
		for _, item := range v.Items() {
			k, ok := item[0].(starlark.String)
			if !ok {
				return nil, fmt.Errorf("values: key %s is not a string", item[0])
			}
			e, err := templateData(item[1], reveal, secret)
			if err != nil {
				return nil, err
			}
			out[string(k)] = e
		}
		return out, nil
	case starlark.Indexable:
		out := make([]any, v.Len())
		for i := range out {
			e, err := templateData(v.Index(i), reveal, secret)
			if err != nil {
				return nil, err
			}
			out[i] = e
		}
		return out, nil
	}
	return v.String(), nil
}
