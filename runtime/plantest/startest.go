package plantest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sort"
	"strings"

	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"

	"github.com/studiorun/studiorun/runtime"
)

// Result is the outcome of one test function of a *_test.star file.
type Result struct {
	Name string
	Err  error
}

// StarFile runs the test_* functions of a Starlark test file, each in
// order of name. Besides the modules, a test file has:
//
//	assert.eq(got, want, msg=""), assert.ne(a, b, msg=""),
//	assert.true(cond, msg=""), assert.contains(container, item, msg=""),
//	assert.fails(fn, substring)
//	plan_of(fn) -> plan       the resources that fn() declares
//	plan(script, vars={}) -> plan   a script's plan ("//scripts/studio.star")
//
// A plan has .resources (structs with address, kind, name, depends_on,
// attributes), .addresses and .resource(address).
func StarFile(file string, modules starlark.StringDict) ([]Result, error) {
	abs, err := filepath.Abs(file)
	if err != nil {
		return nil, err
	}
	root := runtime.ProjectRoot(filepath.Dir(abs))
	extra := starlark.StringDict{
		"assert":  assertModule,
		"plan_of": starlark.NewBuiltin("plan_of", planOf),
		"plan": starlark.NewBuiltin("plan", func(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
			return scriptPlan(root, modules, b, args, kwargs)
		}),
	}
	var thread *starlark.Thread
	globals, err := runtime.Exec(runtime.Options{
		Script:  abs,
		Secrets: runtime.TestSecrets{},
		Modules: modules,
		Extra:   extra,
	}, func(t *starlark.Thread) { thread = t })
	if err != nil {
		return nil, err
	}
	var names []string
	for name, v := range globals {
		if _, ok := v.(starlark.Callable); ok && strings.HasPrefix(name, "test_") {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	if len(names) == 0 {
		return nil, fmt.Errorf("%s: no test_* functions", file)
	}
	results := make([]Result, len(names))
	for i, name := range names {
		_, err := starlark.Call(thread, globals[name], nil, nil)
		results[i] = Result{Name: name, Err: located(err)}
	}
	return results, nil
}

func located(err error) error {
	if ev, ok := err.(*starlark.EvalError); ok {
		return fmt.Errorf("%s", ev.Backtrace())
	}
	return err
}

// planOf implements plan_of(fn): the plan of what fn declares.
func planOf(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var fn starlark.Callable
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "fn", &fn); err != nil {
		return nil, err
	}
	prev := thread.Local("studiorun.builder")
	bld := runtime.NewBuilder()
	bld.Attach(thread)
	_, err := starlark.Call(thread, fn, nil, nil)
	thread.SetLocal("studiorun.builder", prev)
	if err != nil {
		return nil, err
	}
	p, err := bld.Plan()
	if err != nil {
		return nil, err
	}
	return planValue(p)
}

// scriptPlan implements plan(script, vars={}).
func scriptPlan(root string, modules starlark.StringDict, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var script string
	vars := new(starlark.Dict)
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "script", &script, "vars?", &vars); err != nil {
		return nil, err
	}
	if !strings.HasPrefix(script, "//") {
		return nil, fmt.Errorf("%s: script %q: want a path from the project root such as \"//scripts/studio.star\"", b.Name(), script)
	}
	var assignments []string
	for _, item := range vars.Items() {
		k, _ := starlark.AsString(item[0])
		v, ok := starlark.AsString(item[1])
		if !ok {
			v = item[1].String()
		}
		assignments = append(assignments, k+"="+v)
	}
	p, err := runtime.Eval(runtime.Options{
		Script:  filepath.Join(root, filepath.FromSlash(script[2:])),
		Vars:    assignments,
		Secrets: runtime.TestSecrets{},
		Modules: modules,
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", b.Name(), err)
	}
	return planValue(p)
}

// planValue converts a plan to the Starlark value tests inspect, through
// its JSON rendering so that tests see exactly what golden files hold.
func planValue(p *runtime.Plan) (starlark.Value, error) {
	var buf bytes.Buffer
	if err := p.RenderJSON(&buf); err != nil {
		return nil, err
	}
	var doc struct {
		Resources []map[string]any `json:"resources"`
	}
	dec := json.NewDecoder(&buf)
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil {
		return nil, err
	}
	resources := make([]starlark.Value, len(doc.Resources))
	byAddress := map[string]starlark.Value{}
	addresses := make([]starlark.Value, len(doc.Resources))
	for i, r := range doc.Resources {
		fields := starlark.StringDict{}
		for k, v := range r {
			fields[k] = toValue(v)
		}
		resources[i] = starlarkstruct.FromStringDict(starlarkstruct.Default, fields)
		addr := r["address"].(string)
		byAddress[addr] = resources[i]
		addresses[i] = starlark.String(addr)
	}
	lookup := starlark.NewBuiltin("resource", func(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		var addr string
		if err := starlark.UnpackArgs(b.Name(), args, kwargs, "address", &addr); err != nil {
			return nil, err
		}
		if r, ok := byAddress[addr]; ok {
			return r, nil
		}
		return nil, fmt.Errorf("resource: the plan has no %s", addr)
	})
	return starlarkstruct.FromStringDict(starlarkstruct.Default, starlark.StringDict{
		"resources": starlark.NewList(resources),
		"addresses": starlark.NewList(addresses),
		"resource":  lookup,
	}), nil
}

func toValue(v any) starlark.Value {
	switch v := v.(type) {
	case nil:
		return starlark.None
	case bool:
		return starlark.Bool(v)
	case string:
		return starlark.String(v)
	case json.Number:
		if n, err := v.Int64(); err == nil {
			return starlark.MakeInt64(n)
		}
		f, _ := v.Float64()
		return starlark.Float(f)
	case []any:
		out := make([]starlark.Value, len(v))
		for i, e := range v {
			out[i] = toValue(e)
		}
		return starlark.NewList(out)
	case map[string]any:
		d := starlark.NewDict(len(v))
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			_ = d.SetKey(starlark.String(k), toValue(v[k]))
		}
		return d
	}
	return starlark.None
}
