package ssh

import (
	"fmt"
	"slices"

	"go.starlark.net/starlark"

	"github.com/studiorun/studiorun/runtime"
)

// Handler is the spec of an ssh.handler, which notify= declares: the
// service of a host.service task restarted (or reloaded) once, after the
// host's other tasks, when a task that notifies it changed during the
// run, as Ansible's handlers are. Its address is
// ssh.handler.<host>:<service>.
type Handler struct {
	HostTask
	Service    string            `json:"service"`
	Action     string            `json:"action"` // "restart" or "reload": the service task's on_notify
	NotifiedBy []runtime.Address `json:"notified_by"`
}

// Kind implements runtime.Spec.
func (*Handler) Kind() string { return "ssh.handler" }

// notifyKey holds the notifications of an evaluation (a *notifications).
const notifyKey = "ssh.notify"

// notifications are the tasks that notify each service task, in the order
// the script declared them.
type notifications map[runtime.Address][]runtime.Address

// taskMethod is the Go function of a host method that declares a task.
type taskMethod = func(*starlark.Thread, *starlark.Builtin, starlark.Tuple, []starlark.Tuple) (starlark.Value, error)

// withNotify gives a task method the notify= argument that every task
// takes: a service task of the same host (the value host.service returns),
// or a list of them, restarted once after the host's other tasks when the
// task changes.
func withNotify(m taskMethod) taskMethod {
	return func(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		var notify starlark.Value
		rest := make([]starlark.Tuple, 0, len(kwargs))
		for _, kv := range kwargs {
			if k, ok := kv[0].(starlark.String); ok && k == "notify" {
				notify = kv[1]
				continue
			}
			rest = append(rest, kv)
		}
		v, err := m(thread, b, args, rest)
		if err != nil || notify == nil || notify == starlark.None {
			return v, err
		}
		task := v.(runtime.Referent).Resource()
		c := TaskCall{Fn: b.Name(), Host: receiver(b), Identity: task.Name[len(receiver(b).res.Name)+1:]}
		services, err := c.unpackNotify(notify)
		if err != nil {
			return nil, c.Errorf("%v", err)
		}
		bld, err := runtime.BuilderOf(thread, b.Name())
		if err != nil {
			return nil, err
		}
		notified := bld.Local(notifyKey, func() any { return notifications{} }).(notifications)
		for _, s := range services {
			notified[s] = appendNew(notified[s], task.Address)
		}
		bld.OnFinish("ssh.handlers", declareHandlers)
		return v, nil
	}
}

// unpackNotify returns the service tasks that notify= names: one, or a
// list (or tuple) of them, each a service task of the task's own host.
func (c TaskCall) unpackNotify(v starlark.Value) ([]runtime.Address, error) {
	if _, ok := v.(runtime.Referent); ok {
		a, err := c.notifiedService("notify", v)
		return []runtime.Address{a}, err
	}
	seq, ok := v.(starlark.Indexable)
	if !ok || v.Type() == "string" {
		return nil, fmt.Errorf("notify: got %s, want a service task (the value host.service() returns) or a list of them", v.Type())
	}
	var out []runtime.Address
	for i := 0; i < seq.Len(); i++ {
		a, err := c.notifiedService(fmt.Sprintf("notify[%d]", i), seq.Index(i))
		if err != nil {
			return nil, err
		}
		out = appendNew(out, a)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("notify: the list is empty: name a service task, or leave notify= out")
	}
	return out, nil
}

// notifiedService checks that v is a service task on the task's host.
func (c TaskCall) notifiedService(what string, v starlark.Value) (runtime.Address, error) {
	ref, ok := v.(runtime.Referent)
	if !ok {
		return "", fmt.Errorf("%s: got %s, want a service task (the value host.service() returns)", what, v.Type())
	}
	r := ref.Resource()
	svc, ok := r.Spec.(*Service)
	if !ok {
		return "", fmt.Errorf("%s: got %s, want a service task (the value host.service() returns)", what, r.Address)
	}
	if svc.Host != c.Host.res.Address {
		return "", fmt.Errorf("%s: %s is a service of %s, not of %s: a task notifies services on its own host", what, r.Address, svc.Host.Name(), c.Host.res.Name)
	}
	return r.Address, nil
}

// declareHandlers declares, once the script has run, a handler for each
// service task that a task notifies, in the order the services were
// declared. Each handler depends on the tasks that notify it and comes
// last in its host's chain of tasks, after the handlers before it.
func declareHandlers(b *runtime.Builder) error {
	notified := b.Local(notifyKey, func() any { return notifications{} }).(notifications)
	last := b.Local(lastTaskKey, func() any { return map[runtime.Address]runtime.Address{} }).(map[runtime.Address]runtime.Address)
	declared := b.Resources()
	declared = declared[:len(declared):len(declared)]
	for _, svc := range declared {
		by := notified[svc.Address]
		if len(by) == 0 {
			continue
		}
		spec := svc.Spec.(*Service)
		h := &Handler{HostTask: spec.HostTask, Service: spec.Name, Action: spec.notifyAction(), NotifiedBy: by}
		deps := append([]runtime.Address{spec.Host, last[spec.Host], svc.Address}, by...)
		r, err := b.DeclareAt("ssh.service", svc.Name, h, svc.Pos, deps...)
		if err != nil {
			return err
		}
		last[spec.Host] = r.Address
	}
	return nil
}

// appendNew appends a to list unless it is there already.
func appendNew(list []runtime.Address, a runtime.Address) []runtime.Address {
	if slices.Contains(list, a) {
		return list
	}
	return append(list, a)
}
