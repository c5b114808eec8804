package apply

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/studiorun/studiorun/runtime"
)

// Output shows the engine's work: lines for people, or with JSON one event
// per line for tools. It is safe for concurrent use and is the Reporter
// that drivers receive.
type Output struct {
	w    io.Writer
	json bool
	diff bool // show files' unified diffs
	mu   sync.Mutex
	// shown is the last tenth of each step's progress that was printed.
	shown map[string]int64
}

// NewOutput returns an Output writing to w, as JSON events when asJSON.
func NewOutput(w io.Writer, asJSON bool) *Output {
	return &Output{w: w, json: asJSON, shown: map[string]int64{}}
}

// ShowDiffs makes the changes shown carry the unified diffs of files'
// contents (--diff); without it a content change is summarised in a line.
func (o *Output) ShowDiffs() { o.diff = true }

// event is one line of the JSON stream.
type event struct {
	Type    string          `json:"type"` // change, start, progress, note, done, summary
	Address runtime.Address `json:"address,omitempty"`
	Action  string          `json:"action,omitempty"`
	Status  string          `json:"status,omitempty"` // done: ok, failed, skipped
	Error   string          `json:"error,omitempty"`
	Step    string          `json:"step,omitempty"`
	Done    int64           `json:"done,omitempty"`
	Total   int64           `json:"total,omitempty"`
	Message string          `json:"message,omitempty"`
	Seconds float64         `json:"seconds,omitempty"`
	Attrs   []AttrChange    `json:"attributes,omitempty"`
	Counts  map[string]int  `json:"counts,omitempty"`
}

func (o *Output) emit(ev event, text string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.json {
		data, _ := json.Marshal(ev)
		o.w.Write(append(data, '\n'))
		return
	}
	io.WriteString(o.w, text)
}

// Progress implements Reporter: a line at every tenth of a known total.
func (o *Output) Progress(addr runtime.Address, step string, done, total int64) {
	key := string(addr) + " " + step
	tenth := int64(-1)
	if total > 0 {
		tenth = done * 10 / total
	}
	o.mu.Lock()
	last, seen := o.shown[key]
	if seen && last == tenth {
		o.mu.Unlock()
		return
	}
	o.shown[key] = tenth
	o.mu.Unlock()
	text := fmt.Sprintf("%s: %s %s\n", addr, step, humanBytes(done))
	if total > 0 {
		text = fmt.Sprintf("%s: %s %d%% (%s of %s)\n", addr, step, done*100/total, humanBytes(done), humanBytes(total))
	}
	o.emit(event{Type: "progress", Address: addr, Step: step, Done: done, Total: total}, text)
}

// Notef implements Reporter.
func (o *Output) Notef(addr runtime.Address, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	o.emit(event{Type: "note", Address: addr, Message: msg}, fmt.Sprintf("%s: %s\n", addr, msg))
}

var verbs = map[Action][2]string{
	Create:  {"creating", "created"},
	Update:  {"updating", "updated"},
	Replace: {"replacing", "replaced"},
	Delete:  {"deleting", "deleted"},
}

func (o *Output) started(it *item, a Action) {
	text := fmt.Sprintf("%s: %s...\n", it.address(), verbs[a][0])
	if it.host() != "" {
		text = "" // a host's tasks get one line each, when done
	}
	o.emit(event{Type: "start", Address: it.address(), Action: a.String()}, text)
}

// finished reports a step's outcome: for a resource, Terraform-style; for
// a host's task, as Ansible does ("changed: [host] task").
func (o *Output) finished(it *item, a Action, start time.Time, err error) {
	addr := it.address()
	secs := time.Since(start).Seconds()
	ev := event{Type: "done", Address: addr, Action: a.String(), Status: "ok", Seconds: secs}
	if err != nil {
		ev.Status, ev.Error = "failed", err.Error()
	}
	var text string
	switch h := it.host(); {
	case h != "" && err != nil:
		text = fmt.Sprintf("failed: [%s] %s: %v\n", h.Name(), taskLabel(addr, h), err)
	case h != "" && a == NoOp:
		text = fmt.Sprintf("ok: [%s] %s\n", h.Name(), taskLabel(addr, h))
	case h != "":
		text = fmt.Sprintf("changed: [%s] %s (%.1fs)\n", h.Name(), taskLabel(addr, h), secs)
	case err != nil:
		text = fmt.Sprintf("%s: %s failed: %v\n", addr, verbs[a][0], err)
	default:
		text = fmt.Sprintf("%s: %s (%.1fs)\n", addr, verbs[a][1], secs)
	}
	o.emit(ev, text)
}

// taskLabel names a host's task without repeating the host: "ssh.copy
// /etc/sudoers.d/ops" for ssh.copy.vfx-dev-001:/etc/sudoers.d/ops.
func taskLabel(addr, host runtime.Address) string {
	name, ok := strings.CutPrefix(addr.Name(), host.Name()+":")
	if !ok {
		return addr.Kind()
	}
	return addr.Kind() + " " + name
}

// summary reports the outcome of the steps and returns an error naming
// every resource that failed or was skipped.
func (o *Output) summary(steps []*step) error {
	counts := map[string]int{}
	var problems []string
	for _, s := range steps {
		a := s.item.change.Action
		switch {
		case a == NoOp || s.unchanged:
			continue // a host's unchanged task: the recap counts it
		case s.status == succeeded:
			if a == Replace && s.deletion {
				continue // the deletion half of a replace
			}
			counts[verbs[a][1]]++
		case s.status == failed:
			counts["failed"]++
			problems = append(problems, fmt.Sprintf("%s: %v", s.item.address(), s.err))
		case s.status == skipped:
			counts["skipped"]++
			problems = append(problems, fmt.Sprintf("%s: %v", s.item.address(), s.err))
		}
	}
	var parts []string
	for _, k := range []string{"created", "updated", "replaced", "deleted", "failed", "skipped"} {
		if counts[k] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", counts[k], k))
		}
	}
	if len(parts) == 0 {
		parts = []string{"nothing to do"}
	}
	head := "Apply complete: "
	if len(problems) > 0 {
		head = "Apply failed: "
	}
	o.emit(event{Type: "summary", Counts: counts}, "\n"+head+strings.Join(parts, ", ")+".\n")
	if len(problems) == 0 {
		return nil
	}
	sort.Strings(problems)
	return fmt.Errorf("%d resource(s) not applied:\n  %s", len(problems), strings.Join(problems, "\n  "))
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// hostCounts are a host's results in the recap.
type hostCounts struct {
	OK          int `json:"ok"`
	Changed     int `json:"changed"`
	Failed      int `json:"failed"`
	Skipped     int `json:"skipped"`
	Unreachable int `json:"unreachable"`
}

// recap prints a line per host for the host-bound resources (SSH tasks),
// as Ansible's play recap does; nothing when the plan has none.
func (o *Output) recap(items []*item, steps []*step) {
	stepOf := map[runtime.Address]*step{}
	for _, s := range steps {
		stepOf[s.item.address()] = s // a replace's creation follows its deletion
	}
	hosts := map[runtime.Address]*hostCounts{}
	var order []runtime.Address
	for _, it := range items {
		h := it.host()
		if h == "" {
			continue
		}
		c := hosts[h]
		if c == nil {
			c = &hostCounts{}
			hosts[h] = c
			order = append(order, h)
		}
		s, ran := stepOf[it.address()]
		switch {
		case it.failed != nil:
			c.Unreachable++
		case !ran || s.status == succeeded && (s.item.change.Action == NoOp || s.unchanged):
			c.OK++
		case s.status == succeeded:
			c.Changed++
		case s.status == failed:
			c.Failed++
		default:
			c.Skipped++
		}
	}
	if len(order) == 0 {
		return
	}
	sort.Slice(order, func(i, j int) bool { return order[i] < order[j] })
	width := 0
	for _, h := range order {
		width = max(width, len(h.Name()))
	}
	var b strings.Builder
	b.WriteString("\nRecap:\n")
	for _, h := range order {
		c := hosts[h]
		fmt.Fprintf(&b, "  %-*s  ok=%d changed=%d failed=%d skipped=%d unreachable=%d\n", width, h.Name(), c.OK, c.Changed, c.Failed, c.Skipped, c.Unreachable)
		data, _ := json.Marshal(c)
		if o.json {
			o.emit(event{Type: "recap", Address: h, Message: string(data)}, "")
		}
	}
	if !o.json {
		o.emit(event{}, b.String())
	}
}
