package plantest

import (
	"fmt"
	"strings"

	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"
	"go.starlark.net/syntax"
)

// assertModule holds the assertions of Starlark test files; a failed one
// is an error at the caller's line.
var assertModule = &starlarkstruct.Module{
	Name: "assert",
	Members: starlark.StringDict{
		"eq":       starlark.NewBuiltin("assert.eq", assertEq),
		"ne":       starlark.NewBuiltin("assert.ne", assertNe),
		"true":     starlark.NewBuiltin("assert.true", assertTrue),
		"contains": starlark.NewBuiltin("assert.contains", assertContains),
		"fails":    starlark.NewBuiltin("assert.fails", assertFails),
	},
}

func withMsg(msg, format string, args ...any) error {
	text := fmt.Sprintf(format, args...)
	if msg != "" {
		text = msg + ": " + text
	}
	return fmt.Errorf("%s", text)
}

func assertEq(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var got, want starlark.Value
	var msg string
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "got", &got, "want", &want, "msg?", &msg); err != nil {
		return nil, err
	}
	if eq, err := starlark.Equal(got, want); err != nil || !eq {
		return nil, withMsg(msg, "%s: got %s, want %s", b.Name(), got, want)
	}
	return starlark.None, nil
}

func assertNe(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var x, y starlark.Value
	var msg string
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "x", &x, "y", &y, "msg?", &msg); err != nil {
		return nil, err
	}
	if eq, err := starlark.Equal(x, y); err != nil || eq {
		return nil, withMsg(msg, "%s: both are %s", b.Name(), x)
	}
	return starlark.None, nil
}

func assertTrue(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var cond starlark.Value
	var msg string
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "cond", &cond, "msg?", &msg); err != nil {
		return nil, err
	}
	if !cond.Truth() {
		return nil, withMsg(msg, "%s: %s is not true", b.Name(), cond)
	}
	return starlark.None, nil
}

func assertContains(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var container, item starlark.Value
	var msg string
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "container", &container, "item", &item, "msg?", &msg); err != nil {
		return nil, err
	}
	found, err := starlark.Binary(syntax.IN, item, container)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", b.Name(), err)
	}
	if !found.Truth() {
		return nil, withMsg(msg, "%s: %s not in %s", b.Name(), item, container)
	}
	return starlark.None, nil
}

func assertFails(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var fn starlark.Callable
	var substring string
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "fn", &fn, "substring", &substring); err != nil {
		return nil, err
	}
	_, err := starlark.Call(thread, fn, nil, nil)
	if err == nil {
		return nil, fmt.Errorf("%s: %s did not fail", b.Name(), fn.Name())
	}
	msg := err.Error()
	if ev, ok := err.(*starlark.EvalError); ok {
		msg = ev.Msg
	}
	if !strings.Contains(msg, substring) {
		return nil, fmt.Errorf("%s: error %q does not contain %q", b.Name(), msg, substring)
	}
	return starlark.None, nil
}
