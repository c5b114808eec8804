package apply

import (
	"context"
	"fmt"
	"sync"

	"github.com/studiorun/studiorun/runtime"
)

// status is the outcome of a step of the dependency graph.
type status int

const (
	pending status = iota
	succeeded
	failed
	skipped
)

// step is one unit of work in a dependency graph: it runs after every
// step in after has succeeded, and is skipped when one of them did not.
type step struct {
	item   *item
	after  []*step
	status status
	err    error // why it failed, or why it was skipped
	// unchanged marks a step whose driver found nothing to change after
	// all (ErrUnchanged).
	unchanged bool
	// container is the deletion of the object that holds this step's
	// object and takes it along (Container): this step only forgets it.
	container *step
	// deletion marks a step of the deletion phase (for a replace, its
	// first half).
	deletion bool

	waiting    int
	dependents []*step
}

// slots bound the steps that run at once: at most resources steps that
// are not bound to a host, and the steps of at most hosts hosts (a host's
// tasks run one after another through their dependency chain).
type slots struct {
	resources, hosts int
	running          int                     // steps not bound to a host
	onHost           map[runtime.Address]int // running steps per host
}

func newSlots(resources, hosts int) *slots {
	return &slots{resources: max(resources, 1), hosts: max(hosts, 1), onHost: map[runtime.Address]int{}}
}

// take reserves a slot for s, or reports that none is free.
func (sl *slots) take(s *step) bool {
	h := s.item.host()
	switch {
	case h == "" && sl.running >= sl.resources:
		return false
	case h == "":
		sl.running++
	case sl.onHost[h] == 0 && len(sl.onHost) >= sl.hosts:
		return false
	default:
		sl.onHost[h]++
	}
	return true
}

func (sl *slots) release(s *step) {
	h := s.item.host()
	if h == "" {
		sl.running--
		return
	}
	if sl.onHost[h]--; sl.onHost[h] == 0 {
		delete(sl.onHost, h)
	}
}

// runSteps runs the steps, as many at once as sl allows, each as soon as
// the steps it comes after have succeeded. A step that fails stops its
// dependents (skipped, with the reason), not its independent siblings. A
// cancelled context starts no new step.
func runSteps(ctx context.Context, steps []*step, sl *slots, run func(*step) error) {
	for _, s := range steps {
		s.waiting = len(s.after)
		for _, a := range s.after {
			a.dependents = append(a.dependents, s)
		}
	}
	var ready []*step
	for _, s := range steps {
		if s.waiting == 0 {
			ready = append(ready, s)
		}
	}
	done := make(chan *step)
	var wg sync.WaitGroup
	running := 0
	// finish settles a step and makes its dependents ready or skipped.
	var finish func(s *step)
	finish = func(s *step) {
		for _, d := range s.dependents {
			if s.status != succeeded && d.status == pending {
				d.status, d.err = skipped, fmt.Errorf("not applied: %s %s", s.item.address(), s.status)
			}
			d.waiting--
			if d.waiting > 0 {
				continue
			}
			if d.status == skipped {
				finish(d)
			} else {
				ready = append(ready, d)
			}
		}
	}
	for {
		var full []*step // ready, waiting for a free slot
		for len(ready) > 0 {
			s := ready[0]
			ready = ready[1:]
			if s.status == skipped || s.status == failed { // settled before the run
				finish(s)
				continue
			}
			if err := ctx.Err(); err != nil {
				s.status, s.err = skipped, fmt.Errorf("not applied: interrupted")
				finish(s)
				continue
			}
			if !sl.take(s) {
				full = append(full, s)
				continue
			}
			running++
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := run(s); err != nil {
					s.status, s.err = failed, err
				} else {
					s.status = succeeded
				}
				done <- s
			}()
		}
		ready = full
		if running == 0 {
			break // nothing runs: every slot is free, so nothing is ready either
		}
		s := <-done
		running--
		sl.release(s)
		finish(s)
	}
	wg.Wait()
}

func (s status) String() string {
	return [...]string{"pending", "succeeded", "failed", "was skipped"}[s]
}
