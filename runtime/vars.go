package runtime

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"go.starlark.net/starlark"
)

// varSet holds the values given on the command line (--var, --var-file)
// and the vars the scripts declared with var().
type varSet struct {
	given    map[string]given
	declared map[string]*Var
}

type given struct {
	value  any    // string from --var, or a JSON value from --var-file
	source string // "--var dev_host_count=3" or "vars.json"
}

var varName = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)

// newVarSet combines values (from a recorded plan), --var-file and --var,
// each overriding the ones before.
func newVarSet(values map[string]any, assignments []string, varFile string) (*varSet, error) {
	vs := &varSet{given: map[string]given{}, declared: map[string]*Var{}}
	for k, v := range values {
		vs.given[k] = given{v, "recorded var " + k}
	}
	if varFile != "" {
		data, err := os.ReadFile(varFile)
		if err != nil {
			return nil, fmt.Errorf("read var file: %w", err)
		}
		var values map[string]any
		dec := json.NewDecoder(strings.NewReader(string(data)))
		dec.UseNumber()
		if err := dec.Decode(&values); err != nil {
			return nil, fmt.Errorf("var file %s: want a JSON object of var names to values: %w", varFile, err)
		}
		for k, v := range values {
			vs.given[k] = given{v, varFile}
		}
	}
	for _, a := range assignments {
		k, v, ok := strings.Cut(a, "=")
		if !ok || !varName.MatchString(k) {
			return nil, fmt.Errorf("--var %q: want name=value", a)
		}
		vs.given[k] = given{v, "--var " + a}
	}
	return vs, nil
}

// checkUsed reports the given vars that no script declared.
func (vs *varSet) checkUsed(script string) error {
	var unknown []string
	for k := range vs.given {
		if vs.declared[k] == nil {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	sort.Strings(unknown)
	names := make([]string, 0, len(vs.declared))
	for k := range vs.declared {
		names = append(names, k)
	}
	sort.Strings(names)
	known := "it declares no vars"
	if len(names) > 0 {
		known = "it declares " + strings.Join(names, ", ")
	}
	return fmt.Errorf("unknown var %s for %s: %s", strings.Join(quoteAll(unknown), ", "), script, known)
}

// sorted returns the declared vars by name.
func (vs *varSet) sorted() []*Var {
	out := make([]*Var, 0, len(vs.declared))
	for _, v := range vs.declared {
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// varBuiltin implements var(name, default=None, doc="").
func varBuiltin(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var name, doc string
	var def starlark.Value = starlark.None
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "name", &name, "default?", &def, "doc?", &doc); err != nil {
		return nil, err
	}
	if !varName.MatchString(name) {
		return nil, fmt.Errorf("var: name %q: want lower-case letters, digits and _", name)
	}
	defGo, err := varDefault(def)
	if err != nil {
		return nil, fmt.Errorf("var %q: %w", name, err)
	}
	vs := evaluationOf(thread).vars
	pos := CallerPos(thread)
	if prev := vs.declared[name]; prev != nil {
		if fmt.Sprint(prev.Default) != fmt.Sprint(defGo) {
			return nil, fmt.Errorf("var %q is declared again with another default (first at %s)", name, prev.Pos)
		}
		return toStarlark(prev.Value), nil
	}
	v := &Var{Name: name, Doc: doc, Default: defGo, Value: defGo, Pos: pos}
	if g, ok := vs.given[name]; ok {
		if v.Value, err = convertVar(g.value, defGo); err != nil {
			return nil, fmt.Errorf("%s: %w", g.source, err)
		}
	}
	vs.declared[name] = v
	return toStarlark(v.Value), nil
}

// varDefault converts a var's default to its Go value, which fixes the
// var's type.
func varDefault(v starlark.Value) (any, error) {
	switch v := v.(type) {
	case starlark.NoneType:
		return "", nil
	case starlark.String:
		return string(v), nil
	case starlark.Bool:
		return bool(v), nil
	case starlark.Int:
		n, ok := v.Int64()
		if !ok {
			return nil, fmt.Errorf("default %s is out of range", v)
		}
		return n, nil
	case *starlark.List:
		out := make([]any, v.Len())
		for i := range out {
			s, ok := starlark.AsString(v.Index(i))
			if !ok {
				return nil, fmt.Errorf("default list holds %s; a list var holds strings", v.Index(i).Type())
			}
			out[i] = s
		}
		return out, nil
	}
	return nil, fmt.Errorf("default of type %s: want an int, bool, string, list of strings or None", v.Type())
}

// convertVar converts a given value to the type of the var's default.
func convertVar(value, def any) (any, error) {
	s, isString := value.(string)
	switch def.(type) {
	case int64:
		if n, ok := value.(json.Number); ok {
			s, isString = string(n), true
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if !isString || err != nil {
			return nil, fmt.Errorf("want an int, got %v", value)
		}
		return n, nil
	case bool:
		if b, ok := value.(bool); ok {
			return b, nil
		}
		b, err := strconv.ParseBool(s)
		if !isString || err != nil {
			return nil, fmt.Errorf("want true or false, got %v", value)
		}
		return b, nil
	case []any:
		if isString {
			var out []any
			for _, part := range strings.Split(s, ",") {
				if part = strings.TrimSpace(part); part != "" {
					out = append(out, part)
				}
			}
			return out, nil
		}
		list, ok := value.([]any)
		if !ok {
			return nil, fmt.Errorf("want a list of strings, got %v", value)
		}
		for _, e := range list {
			if _, ok := e.(string); !ok {
				return nil, fmt.Errorf("want a list of strings, got an element %v", e)
			}
		}
		return list, nil
	default:
		if !isString {
			return nil, fmt.Errorf("want a string, got %v", value)
		}
		return s, nil
	}
}

func toStarlark(v any) starlark.Value {
	switch v := v.(type) {
	case string:
		return starlark.String(v)
	case bool:
		return starlark.Bool(v)
	case int64:
		return starlark.MakeInt64(v)
	case []any:
		elems := make([]starlark.Value, len(v))
		for i, e := range v {
			elems[i] = toStarlark(e)
		}
		return starlark.NewList(elems)
	}
	return starlark.None
}

func quoteAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = strconv.Quote(s)
	}
	return out
}
