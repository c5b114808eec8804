// Package runtime evaluates studiorun scripts into plans: the Starlark
// interpreter with its loader and global builtins, the plan model and its
// dependency graph, and the plan's renderings.
package runtime

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"go.starlark.net/lib/json"
	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"
	"go.starlark.net/syntax"
)

// Options configure an evaluation.
type Options struct {
	Script  string   // path of the entry script
	Vars    []string // --var name=value, in order
	VarFile string   // --var-file, a JSON object
	// VarValues are var values as JSON decodes them (a golden plan's
	// "vars"); --var-file and --var override them.
	VarValues map[string]any
	Secrets   SecretSource        // values of secret(); nil: none is set
	Modules   starlark.StringDict // the built-in modules (qemu, libvirt, ...)
	Extra     starlark.StringDict // further globals (the test builtins)
	Stderr    io.Writer           // print() output; nil: discarded
	// MaxSteps bounds the Starlark steps of the evaluation; 0: no bound.
	MaxSteps uint64
}

// FileOptions is the Starlark dialect of studiorun scripts: top-level
// loops and ifs (a fleet is declared in a loop), reassignable globals,
// while and set.
var FileOptions = &syntax.FileOptions{Set: true, While: true, TopLevelControl: true, GlobalReassign: true}

const evaluationKey = "studiorun.evaluation"

// evaluation is the state shared by the threads of one evaluation.
type evaluation struct {
	root, realRoot string
	vars           *varSet
	secrets        SecretSource
	predeclared    starlark.StringDict
	stderr         io.Writer
	maxSteps       uint64
	loading        []string
	loaded         map[string]*loadEntry
}

func evaluationOf(thread *starlark.Thread) *evaluation {
	return thread.Local(evaluationKey).(*evaluation)
}

// Eval evaluates the entry script and returns its plan. Errors in the
// script are *Error values located at file:line:col.
func Eval(opts Options) (*Plan, error) {
	ev, entry, err := newEvaluation(opts)
	if err != nil {
		return nil, err
	}
	thread := ev.newThread(entry)
	b := NewBuilder()
	b.Attach(thread)
	if err := ev.run(thread, entry); err != nil {
		return nil, err
	}
	plan, err := b.Plan()
	if err != nil {
		return nil, err
	}
	plan.Root = ev.root
	plan.Script = entry
	plan.Vars = ev.vars.sorted()
	return plan, nil
}

// Exec runs the entry script on a thread of the caller's, which has its own
// builder attached (or none), and returns the script's globals. The test
// runner uses it for *_test.star files.
func Exec(opts Options, attach func(*starlark.Thread)) (starlark.StringDict, error) {
	ev, entry, err := newEvaluation(opts)
	if err != nil {
		return nil, err
	}
	thread := ev.newThread(entry)
	attach(thread)
	src, err := ev.readFile(entry)
	if err != nil {
		return nil, err
	}
	ev.loading = []string{entry}
	globals, err := ev.exec(thread, entry, src)
	if err != nil {
		return nil, locate(err)
	}
	return globals, nil
}

func newEvaluation(opts Options) (*evaluation, string, error) {
	abs, err := filepath.Abs(opts.Script)
	if err != nil {
		return nil, "", fmt.Errorf("script %s: %w", opts.Script, err)
	}
	if _, err := os.Stat(abs); err != nil {
		return nil, "", fmt.Errorf("script %s: %w", opts.Script, err)
	}
	root := ProjectRoot(filepath.Dir(abs))
	realRoot, err := filepath.EvalSymlinks(root)
	if err != nil {
		return nil, "", fmt.Errorf("project root %s: %w", root, err)
	}
	rel, err := filepath.Rel(root, abs)
	if err != nil {
		return nil, "", fmt.Errorf("script %s: %w", opts.Script, err)
	}
	vars, err := newVarSet(opts.VarValues, opts.Vars, opts.VarFile)
	if err != nil {
		return nil, "", err
	}
	stderr := opts.Stderr
	if stderr == nil {
		stderr = io.Discard
	}
	ev := &evaluation{
		root:     root,
		realRoot: realRoot,
		vars:     vars,
		secrets:  opts.Secrets,
		stderr:   stderr,
		maxSteps: opts.MaxSteps,
		loaded:   map[string]*loadEntry{},
		predeclared: starlark.StringDict{
			"var":       starlark.NewBuiltin("var", varBuiltin),
			"secret":    starlark.NewBuiltin("secret", secretBuiltin),
			"read_file": starlark.NewBuiltin("read_file", readFileBuiltin),
			"template":  starlark.NewBuiltin("template", templateBuiltin),
			"struct":    starlark.NewBuiltin("struct", starlarkstruct.Make),
			"json":      json.Module,
		},
	}
	for k, v := range opts.Modules {
		ev.predeclared[k] = v
	}
	for k, v := range opts.Extra {
		ev.predeclared[k] = v
	}
	return ev, filepath.ToSlash(rel), nil
}

// run executes the entry script and checks that every given var was used.
func (ev *evaluation) run(thread *starlark.Thread, entry string) error {
	src, err := ev.readFile(entry)
	if err != nil {
		return err
	}
	ev.loading = []string{entry}
	if _, err := ev.exec(thread, entry, src); err != nil {
		return locate(err)
	}
	return ev.vars.checkUsed(entry)
}

func (ev *evaluation) exec(thread *starlark.Thread, name string, src []byte) (starlark.StringDict, error) {
	return starlark.ExecFileOptions(FileOptions, thread, name, src, ev.predeclared)
}

func (ev *evaluation) newThread(name string) *starlark.Thread {
	thread := &starlark.Thread{
		Name: name,
		Load: ev.load,
		Print: func(_ *starlark.Thread, msg string) {
			fmt.Fprintln(ev.stderr, msg)
		},
	}
	if ev.maxSteps > 0 {
		thread.SetMaxExecutionSteps(ev.maxSteps)
	}
	thread.SetLocal(evaluationKey, ev)
	return thread
}
