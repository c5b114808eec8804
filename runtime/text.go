package runtime

import (
	"bytes"
	"encoding/json"
	"fmt"
	"text/template"

	"go.starlark.net/starlark"
)

// Text is content that may hold secrets: a file's content, a script, a
// rendered template. Plans show its display form; drivers use Reveal.
type Text struct {
	shown, value string
	secret       bool
}

// UnpackText reads a string or a secret; what names the argument.
func UnpackText(what string, v starlark.Value) (*Text, error) {
	switch v := v.(type) {
	case starlark.String:
		return &Text{shown: string(v), value: string(v)}, nil
	case Secret:
		return &Text{shown: v.shown, value: v.value, secret: true}, nil
	}
	return nil, fmt.Errorf("%s: got %s, want a string or a secret", what, v.Type())
}

// Secret reports whether the text holds a secret.
func (t *Text) Secret() bool { return t.secret }

// Reveal returns the text itself, for drivers to use and never to print.
func (t *Text) Reveal() string { return t.value }

// String returns the display form.
func (t *Text) String() string { return t.shown }

// MarshalJSON writes the display form.
func (t *Text) MarshalJSON() ([]byte, error) { return encodeString(t.shown) }

// Value returns the text as a Starlark value: a string, or a Secret.
func (t *Text) Value() starlark.Value {
	if t.secret {
		return Secret{shown: t.shown, value: t.value}
	}
	return starlark.String(t.value)
}

// encodeString encodes s as a JSON string without escaping <, > and &
// (shell scripts and boot commands are full of them).
func encodeString(s string) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// RenderTemplate renders the Go text/template text (name is its file, for
// errors) with Starlark values. A secret among the values makes the text
// secret, its display form showing "(secret)" in the secret's place.
func RenderTemplate(name, text string, values map[string]starlark.Value) (*Text, error) {
	tmpl, err := template.New(name).Option("missingkey=error").Parse(text)
	if err != nil {
		return nil, err // text/template's errors start with "template: "
	}
	var out [2]bytes.Buffer
	secret := false
	for i, reveal := range []bool{false, true} {
		data := make(map[string]any, len(values))
		for k, v := range values {
			if data[k], err = templateData(v, reveal, &secret); err != nil {
				return nil, err
			}
		}
		if err := tmpl.Execute(&out[i], data); err != nil {
			return nil, err
		}
		if !secret {
			break // without secrets, the display form is the text
		}
	}
	if !secret {
		s := out[0].String()
		return &Text{shown: s, value: s}, nil
	}
	return &Text{shown: out[0].String(), value: out[1].String(), secret: true}, nil
}

// templateData converts a Starlark value to the Go value a template sees;
// secrets become their display form, or their value with reveal.
func templateData(v starlark.Value, reveal bool, secret *bool) (any, error) {
	switch v := v.(type) {
	case Secret:
		*secret = true
		if reveal {
			return v.value, nil
		}
		return v.shown, nil
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
				return nil, fmt.Errorf("template values: key %s is not a string", item[0])
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
