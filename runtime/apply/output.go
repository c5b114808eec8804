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
	mu   sync.Mutex
	// shown is the last tenth of each step's progress that was printed.
	shown map[string]int64
}

// NewOutput returns an Output writing to w, as JSON events when asJSON.
func NewOutput(w io.Writer, asJSON bool) *Output {
	return &Output{w: w, json: asJSON, shown: map[string]int64{}}
}

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

func (o *Output) started(addr runtime.Address, a Action) {
	o.emit(event{Type: "start", Address: addr, Action: a.String()}, fmt.Sprintf("%s: %s...\n", addr, verbs[a][0]))
}

func (o *Output) finished(addr runtime.Address, a Action, start time.Time, err error) {
	secs := time.Since(start).Seconds()
	if err != nil {
		o.emit(event{Type: "done", Address: addr, Action: a.String(), Status: "failed", Error: err.Error(), Seconds: secs},
			fmt.Sprintf("%s: %s failed: %v\n", addr, verbs[a][0], err))
		return
	}
	o.emit(event{Type: "done", Address: addr, Action: a.String(), Status: "ok", Seconds: secs},
		fmt.Sprintf("%s: %s (%.1fs)\n", addr, verbs[a][1], secs))
}

// summary reports the outcome of the steps and returns an error naming
// every resource that failed or was skipped.
func (o *Output) summary(steps []*step) error {
	counts := map[string]int{}
	var problems []string
	for _, s := range steps {
		switch s.status {
		case succeeded:
			a := s.item.change.Action
			if a == Replace && s.item.res == nil {
				continue // the deletion half of a replace
			}
			counts[verbs[a][1]]++
		case failed:
			counts["failed"]++
			problems = append(problems, fmt.Sprintf("%s: %v", s.item.address(), s.err))
		case skipped:
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
	ran := map[runtime.Address]*step{}
	for _, s := range steps {
		ran[s.item.address()] = s // a replace's creation follows its deletion
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
		s, applied := ran[it.address()]
		switch {
		case it.failed != nil:
			c.Unreachable++
		case !applied:
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
