package runtime

import (
	"errors"
	"fmt"
	"strings"

	"go.starlark.net/resolve"
	"go.starlark.net/starlark"
	"go.starlark.net/syntax"
)

// Error is an evaluation error located in a script: "file:line:col: msg".
// Backtrace, when set, lists the Starlark calls that led to it.
type Error struct {
	Pos       syntax.Position
	Msg       string
	Backtrace string
}

func (e *Error) Error() string {
	if !e.Pos.IsValid() {
		return e.Msg
	}
	return fmt.Sprintf("%s: %s", e.Pos, e.Msg)
}

// locate turns an error from go.starlark.net into an *Error at the
// innermost script position it carries; other errors pass unchanged.
func locate(err error) error {
	var located *Error
	if errors.As(err, &located) {
		return located
	}
	var list resolve.ErrorList
	if errors.As(err, &list) && len(list) > 0 {
		msgs := make([]string, len(list))
		for i, e := range list {
			msgs[i] = e.Msg
			if i > 0 {
				msgs[i] = fmt.Sprintf("%s: %s", e.Pos, e.Msg)
			}
		}
		return &Error{Pos: list[0].Pos, Msg: strings.Join(msgs, "\n")}
	}
	var serr syntax.Error
	if errors.As(err, &serr) {
		return &Error{Pos: serr.Pos, Msg: serr.Msg}
	}
	var eval *starlark.EvalError
	if errors.As(err, &eval) {
		// A load() wraps the loaded file's error: report the innermost one.
		if inner := errors.Unwrap(eval); inner != nil {
			if l := locate(inner); isLocated(l) {
				return l
			}
		}
		return &Error{Pos: innermostScriptPos(eval.CallStack), Msg: eval.Msg, Backtrace: eval.Backtrace()}
	}
	return err
}

func isLocated(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Pos.IsValid()
}

func innermostScriptPos(stack starlark.CallStack) syntax.Position {
	for i := len(stack) - 1; i >= 0; i-- {
		if p := stack[i].Pos; p.IsValid() && p.Filename() != "<builtin>" {
			return p
		}
	}
	return syntax.Position{}
}
