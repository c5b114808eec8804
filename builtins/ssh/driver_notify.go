package ssh

import (
	"context"
	"fmt"
	"strings"

	"github.com/studiorun/studiorun/runtime"
	"github.com/studiorun/studiorun/runtime/apply"
)

// The handlers of notify=: a handler would act (Diff) when one of the
// tasks that notify it would change, decided from the host's one check;
// it acts (Apply) only when one of them did change in this run.

// diffHandler decides a handler from the decisions of its notifiers, on
// the probes of the host's check; the caller holds h.mu after a check.
func (d *Driver) diffHandler(h *hostRun, r *runtime.Resource, hd *Handler) (*apply.Change, error) {
	var would []string
	for _, n := range hd.NotifiedBy {
		if h.stepErr[n] != nil {
			continue // the notifier's own Diff reports it
		}
		decs, err := DecideSteps(h.steps[n], &h.conn.facts, h.probes[n])
		if err != nil {
			continue // as above
		}
		if changeOf(h.steps[n], decs).Action != apply.NoOp {
			would = append(would, string(n))
		}
	}
	if len(would) == 0 {
		d.setPending(r.Address, false)
		return &apply.Change{Action: apply.NoOp}, nil
	}
	d.setPending(r.Address, true)
	return &apply.Change{Action: apply.Update, Attrs: []apply.AttrChange{{
		Name: hd.Action, Note: "notified by " + strings.Join(would, ", "),
	}}}, nil
}

// applyHandler restarts (or reloads) the service of a handler when a task
// that notifies it changed in this run, and does nothing otherwise; the
// caller holds h.mu after a check.
func (d *Driver) applyHandler(ctx context.Context, h *hostRun, r *runtime.Resource, hd *Handler, rep apply.Reporter) (bool, error) {
	var by []string
	for _, n := range hd.NotifiedBy {
		if d.changedInRun(n) {
			by = append(by, string(n))
		}
	}
	if len(by) == 0 {
		if rep != nil {
			rep.Notef(r.Address, "ok: not %sed, no task that notifies it changed", hd.Action)
		}
		return false, nil
	}
	h.changing()
	script := HandlerScript(hd)
	if _, err := h.conn.run(ctx, script.String(), nil); err != nil {
		return false, fmt.Errorf("%s %s: %w", hd.Action, hd.Service, err)
	}
	if rep != nil {
		rep.Notef(r.Address, "%sed %s: notified by %s", hd.Action, hd.Service, strings.Join(by, ", "))
	}
	return true, nil
}

// HandlerScript returns the commands of a handler: reload systemd's units
// first when the unit's file changed on disk (systemd says so), then
// restart or reload the service.
func HandlerScript(hd *Handler) Script {
	var s Script
	q := Quote(hd.Service)
	s.Add(`if [ "$(systemctl show -p NeedDaemonReload --value ` + q + ` 2>/dev/null)" = yes ]; then systemctl daemon-reload; fi`)
	s.Cmd("systemctl", hd.Action, hd.Service)
	return s
}

// markChanged records that a task changed its host in this run.
func (d *Driver) markChanged(a runtime.Address, changed bool) {
	if !changed {
		return
	}
	d.doneMu.Lock()
	defer d.doneMu.Unlock()
	d.changed[a] = true
}

// changedInRun reports whether a task changed its host in this run.
func (d *Driver) changedInRun(a runtime.Address) bool {
	d.doneMu.Lock()
	defer d.doneMu.Unlock()
	return d.changed[a]
}
