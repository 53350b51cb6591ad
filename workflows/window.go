package workflows

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
)

// Strategies: how hosts are started.
const (
	// StrategyBatches runs the planned batches in lock-step: a batch
	// starts when the one before it has finished (the default).
	StrategyBatches = "batches"
	// StrategyWindow slides a window over the hosts in plan order: as
	// soon as a host finishes, the next one starts, as long as it fits
	// under max_unavailable (default the batch size), the zone cap and the
	// failure budget. One slow host no longer holds up its whole batch.
	StrategyWindow = "window"
)

// checkStrategy validates Batching.Strategy.
func checkStrategy(b Batching) error {
	switch b.Strategy {
	case "", StrategyBatches:
	case StrategyWindow:
		if b.Pause > 0 {
			return fmt.Errorf("pause: a sliding window has no batches to pause between; remove pause or use strategy batches")
		}
	default:
		return fmt.Errorf("strategy: want %q or %q, found %q", StrategyBatches, StrategyWindow, b.Strategy)
	}
	return nil
}

// windowZoneCap is the per-zone cap a window keeps to when none is set:
// batches never hold two hosts of a zone (unless allow_same_zone), and a
// window must not take two out at once either.
func windowZoneCap(b Batching) Batching {
	if b.Strategy == StrategyWindow && b.MaxUnavailablePerZone == "" && !b.AllowSameZone {
		b.MaxUnavailablePerZone = "1"
	}
	return b
}

// window runs every host not yet done as one sliding window, in plan
// order: dispatch starts each as soon as it fits under the caps. It
// returns the run's status so far.
func (r *run) window(ctx context.Context, soft <-chan struct{}, stopped *atomic.Bool) string {
	if ctx.Err() != nil {
		return StatusInterrupted
	}
	select {
	case <-soft:
		stopped.Store(true)
	default:
	}
	if stopped.Load() {
		return StatusStopped
	}
	var todo []string
	for _, bi := range r.batchOrder() {
		for _, h := range r.st.Batches[bi] {
			if r.job.Prepare == nil && r.st.Hosts[h].Status == HostDone {
				continue
			}
			todo = append(todo, h)
		}
	}
	if len(todo) == 0 {
		return StatusDone
	}
	r.mu.Lock()
	r.emit(Event{Type: EventBatchStart, Batch: 1, Batches: 1, Hosts: todo, Summary: "sliding window: " + r.lim.String()})
	r.mu.Unlock()
	r.slide(ctx, todo)
	r.mu.Lock()
	r.emit(Event{Type: EventBatchDone, Batch: 1, Batches: 1})
	r.mu.Unlock()
	switch {
	case r.noDispatch.Load():
		return StatusFailed
	case ctx.Err() != nil:
		return StatusInterrupted
	case stopped.Load() && r.nextBatch() < len(r.st.Batches):
		return StatusStopped
	}
	return StatusDone
}

// slide starts the hosts of a window, each as soon as it fits under the
// caps: the first host in plan order that fits goes next, so a host
// waiting for its zone does not hold up hosts of other zones behind it.
// It waits for the hosts it started. Hosts it could not start stay
// pending.
func (r *run) slide(ctx context.Context, todo []string) {
	todo = r.slots.outFirst(todo)
	var wg sync.WaitGroup
	stop := func() bool { return ctx.Err() != nil || r.noDispatch.Load() || r.stopped.Load() }
	for len(todo) > 0 {
		h, capErr := r.slots.acquireAny(stop, todo)
		if capErr != nil {
			// No host left can ever fit: hosts left out fill the caps.
			r.firstMu.Lock()
			if r.capErr == nil {
				r.capErr = capErr
			} else {
				r.capErr.Skipped = append(r.capErr.Skipped, capErr.Skipped...)
			}
			r.firstMu.Unlock()
			r.failed.Store(true)
			break
		}
		if h == "" {
			break
		}
		todo = slices.DeleteFunc(todo, func(x string) bool { return x == h })
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.host(ctx, 1, h)
			r.mu.Lock()
			out := leftOut(r.st.Hosts[h])
			r.mu.Unlock()
			r.slots.release(h, out)
		}()
	}
	wg.Wait()
}

// acquireAny waits until one of hosts fits under the caps, counts it and
// returns it, trying them in order. It returns "" when the run must start
// no more hosts, and a *CapacityError when none of them can ever fit (the
// caps are full of hosts left out and none is in progress).
func (s *slots) acquireAny(stop func() bool, hosts []string) (string, *CapacityError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		if stop() {
			return "", nil
		}
		var firstCap string
		var firstOut []string
		for i, h := range hosts {
			ok, cap, out := s.fits(h)
			if ok {
				s.out[h] = true
				s.running++
				s.lim.PeakUnavailable = max(s.lim.PeakUnavailable, len(s.out))
				return h, nil
			}
			if i == 0 {
				firstCap, firstOut = cap, out
			}
		}
		if s.running == 0 {
			return "", &CapacityError{Host: hosts[0], Cap: firstCap, Out: firstOut, Skipped: slices.Clone(hosts)}
		}
		s.cond.Wait()
	}
}
