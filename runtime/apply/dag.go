package apply

import (
	"context"
	"fmt"
	"sync"
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

	waiting    int
	dependents []*step
}

// runSteps runs the steps, at most parallel at once, each as soon as the
// steps it comes after have succeeded. A step that fails stops its
// dependents (skipped, with the reason), not its independent siblings. A
// cancelled context starts no new step.
func runSteps(ctx context.Context, steps []*step, parallel int, run func(*step) error) {
	if parallel < 1 {
		parallel = 1
	}
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
	for len(ready) > 0 || running > 0 {
		for running < parallel && len(ready) > 0 {
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
		if running == 0 {
			break
		}
		s := <-done
		running--
		finish(s)
	}
	wg.Wait()
}

func (s status) String() string {
	return [...]string{"pending", "succeeded", "failed", "was skipped"}[s]
}
