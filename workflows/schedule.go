package workflows

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"
)

// slots counts the hosts out of rotation and hands out places under the
// caps: a host starts only when it fits under max_unavailable (and its
// zone's cap), counting the hosts in progress and those that failed and
// were left out. The count is the engine's own; it is what HAProxy sees
// because the engine only drains a host it has counted.
type slots struct {
	mu      sync.Mutex
	cond    *sync.Cond
	lim     Limits
	zones   map[string]string
	out     map[string]bool // counted out of rotation: in progress or left out
	running int
}

func newSlots(lim Limits, zones map[string]string) *slots {
	s := &slots{lim: lim, zones: zones, out: map[string]bool{}}
	s.cond = sync.NewCond(&s.mu)
	return s
}

// leftOut reports whether a host that is not running is out of rotation:
// it failed (whatever its marks say) or holds a rotation mark.
func leftOut(hs *HostState) bool {
	return hs.Status == HostFailed || hs.Status == HostRollbackFailed || len(hs.Marks) > 0
}

// fits reports whether host may start; s.mu must be held. It returns the
// cap that refuses it otherwise.
func (s *slots) fits(host string) (bool, string, []string) {
	n := len(s.out)
	if !s.out[host] {
		n++
	}
	if s.lim.MaxUnavailable > 0 && n > s.lim.MaxUnavailable {
		return false, fmt.Sprintf("max_unavailable %d", s.lim.MaxUnavailable), s.list("", false)
	}
	if s.lim.ZoneCaps != nil {
		z := s.zones[host]
		zn := 0
		for h := range s.out {
			if s.zones[h] == z && h != host {
				zn++
			}
		}
		if c := s.lim.ZoneCaps[z]; c > 0 && zn+1 > c {
			return false, fmt.Sprintf("max_unavailable_per_zone %d in zone %q", c, z), s.list(z, true)
		}
	}
	return true, "", nil
}

func (s *slots) list(zone string, byZone bool) []string {
	var out []string
	for h := range s.out {
		if !byZone || s.zones[h] == zone {
			out = append(out, h)
		}
	}
	sort.Slice(out, func(i, j int) bool { return naturalLess(out[i], out[j]) })
	return out
}

// acquire waits until host fits under the caps and counts it. It returns
// false without counting when the run must start no more hosts (stop
// reports why) or when host can never fit: the cap is full of hosts left
// out and none is in progress to free a place (the error says which).
func (s *slots) acquire(stop func() bool, host string) (bool, *CapacityError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		if stop() {
			return false, nil
		}
		ok, cap, out := s.fits(host)
		if ok {
			s.out[host] = true
			s.running++
			s.lim.PeakUnavailable = max(s.lim.PeakUnavailable, len(s.out))
			return true, nil
		}
		if s.running == 0 {
			return false, &CapacityError{Host: host, Cap: cap, Out: out, Skipped: []string{host}}
		}
		s.cond.Wait()
	}
}

// acquireReady counts, in order and without waiting, the hosts at the
// head of hosts that fit under the caps now, and returns how many.
func (s *slots) acquireReady(stop func() bool, hosts []string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, h := range hosts {
		if stop() {
			break
		}
		if ok, _, _ := s.fits(h); !ok {
			break
		}
		s.out[h] = true
		s.running++
		s.lim.PeakUnavailable = max(s.lim.PeakUnavailable, len(s.out))
		n++
	}
	return n
}

// release ends host's run: it stays counted when it is left out of
// rotation.
func (s *slots) release(host string, out bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.running--
	if !out {
		delete(s.out, host)
	}
	s.cond.Broadcast()
}

// outFirst orders hosts already counted out (left out by an earlier
// attempt) before the others: each holds a place that only its own run
// can free.
func (s *slots) outFirst(hosts []string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := slices.Clone(hosts)
	slices.SortStableFunc(out, func(a, b string) int {
		switch {
		case s.out[a] && !s.out[b]:
			return -1
		case !s.out[a] && s.out[b]:
			return 1
		}
		return 0
	})
	return out
}

// wake lets a waiting acquire look at its stop condition again.
func (s *slots) wake() {
	s.mu.Lock()
	s.cond.Broadcast()
	s.mu.Unlock()
}

// peak is the most hosts counted out at once.
func (s *slots) peak() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lim.PeakUnavailable
}

// dispatch starts the hosts of one batch, each when it fits under the
// caps, and waits for them. Hosts it could not start stay pending. The
// hosts that fit at once are counted together before any starts: a host
// that fails within moments must not keep its batch-mates, which fit and
// were about to start with it, from starting (they finish their steps,
// as hosts in progress do).
func (r *run) dispatch(ctx context.Context, batch int, todo []string) {
	todo = r.slots.outFirst(todo)
	var wg sync.WaitGroup
	stop := func() bool { return ctx.Err() != nil || r.noDispatch.Load() || r.stopped.Load() }
	start := func(h string) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.host(ctx, batch, h)
			r.mu.Lock()
			out := leftOut(r.st.Hosts[h])
			r.mu.Unlock()
			r.slots.release(h, out)
		}()
	}
	ready := r.slots.acquireReady(stop, todo)
	for _, h := range todo[:ready] {
		start(h)
	}
	for _, h := range todo[ready:] {
		ok, capErr := r.slots.acquire(stop, h)
		if capErr != nil {
			// This host can never fit (hosts left out fill its cap);
			// another, in another zone, still may.
			r.firstMu.Lock()
			if r.capErr == nil {
				r.capErr = capErr
			} else {
				r.capErr.Skipped = append(r.capErr.Skipped, h)
			}
			r.firstMu.Unlock()
			r.failed.Store(true)
			continue
		}
		if !ok {
			break
		}
		start(h)
	}
	wg.Wait()
}

// initialOut counts the hosts a resumed run finds left out of rotation by
// an earlier attempt (failed, or holding a mark): they take places under
// the caps from the start.
func (r *run) initialOut() {
	for _, b := range r.st.Batches {
		for _, h := range b {
			if hs := r.st.Hosts[h]; hs.Status != HostPending && hs.Status != HostDone && leftOut(hs) {
				r.slots.out[h] = true
			}
		}
	}
}

// batchOrder is the order the batches run in: first those holding a host
// an earlier attempt left out of rotation (it already takes a place under
// the caps, and bringing it back frees it), then the others, each group in
// plan order.
func (r *run) batchOrder() []int {
	var first, rest []int
	for i, b := range r.st.Batches {
		if slices.ContainsFunc(b, func(h string) bool { return r.slots.out[h] }) {
			first = append(first, i)
		} else {
			rest = append(rest, i)
		}
	}
	return append(first, rest...)
}

// failErr is the error of a run that ended failed.
func (r *run) failErr() error {
	r.firstMu.Lock()
	defer r.firstMu.Unlock()
	if r.lockErr != nil {
		return r.lockErr
	}
	if len(r.failures) == 1 && r.capErr == nil && r.lim.MaxFailures == 0 {
		return r.failures[0]
	}
	return &FailuresError{Failures: slices.Clone(r.failures), MaxFailures: r.lim.MaxFailures,
		Spent: len(r.failures) > r.lim.MaxFailures, Capacity: r.capErr}
}
