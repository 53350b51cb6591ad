package workflows

import (
	"context"
	"slices"
	"sort"
	"strings"
	"sync"
)

// Silent is the set of hosts a run found not answering: a host that gave
// no response to its own step, or to a partial broadcast. A partial
// broadcast does not wait for them again in that run. It is safe for
// concurrent use; the deploy shares it with its observation of the load
// balancers.
type Silent struct {
	mu    sync.Mutex
	hosts map[string]bool
	// seen are the hosts met in partial broadcasts, per filter: a silent
	// one that discovery no longer lists still missed the change.
	seen map[string]map[string]bool
}

// seenIn records the hosts that a partial broadcast on filter reached or
// expected.
func (s *Silent) seenIn(filter string, results []Result) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.seen == nil {
		s.seen = map[string]map[string]bool{}
	}
	if s.seen[filter] == nil {
		s.seen[filter] = map[string]bool{}
	}
	for _, r := range results {
		s.seen[filter][r.Host] = true
	}
}

// missed lists the silent hosts met before on filter that are not in
// hosts.
func (s *Silent) missed(filter string, hosts []string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for h := range s.seen[filter] {
		if s.hosts[h] && !slices.Contains(hosts, h) {
			out = append(out, h)
		}
	}
	return out
}

// Add records hosts as silent. The methods of a nil *Silent do nothing.
func (s *Silent) Add(hosts ...string) {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.hosts == nil {
		s.hosts = map[string]bool{}
	}
	for _, h := range hosts {
		s.hosts[h] = true
	}
}

// Remove takes hosts off the silent list: they answer again.
func (s *Silent) Remove(hosts ...string) {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, h := range hosts {
		delete(s.hosts, h)
	}
}

// Has reports whether host is silent.
func (s *Silent) Has(host string) bool {
	if s == nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hosts[host]
}

// Len is the number of silent hosts.
func (s *Silent) Len() int {
	if s == nil {
		return 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.hosts)
}

// Split divides hosts into those to call and the silent ones, both
// sorted.
func (s *Silent) Split(hosts []string) (call, silent []string) {
	if s != nil {
		s.mu.Lock()
		defer s.mu.Unlock()
	}
	for _, h := range hosts {
		if s != nil && s.hosts[h] {
			silent = append(silent, h)
		} else {
			call = append(call, h)
		}
	}
	sort.Strings(call)
	sort.Strings(silent)
	return call, silent
}

// HostUnreached is a host whose last change on the hosts of a partial
// broadcast (its drain or enable on every HAProxy) did not reach some of
// them: their state for the host may be stale until reconciled.
type HostUnreached struct {
	Host string   `json:"host"`
	By   []string `json:"by"`
}

func (u HostUnreached) String() string {
	return u.Host + " (not reached: " + strings.Join(u.By, ", ") + ")"
}

// broadcastTargets resolves a partial broadcast once some hosts are known
// silent: the matching hosts are discovered and called directly, without
// the silent ones. With no silent host it returns nil (broadcast as
// usual, no discovery).
func (e *Engine) broadcastTargets(ctx context.Context, silent *Silent, filter []string) (call, skipped []string, err error) {
	if silent == nil || silent.Len() == 0 {
		return nil, nil, nil
	}
	hosts, err := e.Caller.Discover(ctx, filter)
	if err != nil {
		return nil, nil, err
	}
	ids := make([]string, 0, len(hosts))
	for _, h := range hosts {
		ids = append(ids, h.Identity)
	}
	call, skipped = silent.Split(ids)
	// A dead host may have left the registry: it still missed the change.
	skipped = append(skipped, silent.missed(strings.Join(filter, " "), ids)...)
	sort.Strings(skipped)
	return call, skipped, nil
}

// noResponse lists the hosts of results that did not answer.
func noResponse(results []Result) []string {
	var out []string
	for _, r := range results {
		if r.NoResponse {
			out = append(out, r.Host)
		}
	}
	return out
}

// unreached lists the run's hosts whose last partial broadcast missed
// some hosts; r.mu must be held.
func (r *run) unreached() []HostUnreached {
	var out []HostUnreached
	for _, b := range r.st.Batches {
		for _, h := range b {
			if u := r.st.Hosts[h].Unreached; len(u) > 0 {
				out = append(out, HostUnreached{Host: h, By: slices.Clone(u)})
			}
		}
	}
	return out
}

// partialFilter is the filter a partial broadcast step is sent with, the
// key of the hosts it met.
func partialFilter(step Step, vars map[string]string) []string {
	f, _ := expandList(step.Filter, vars)
	return append([]string{"agent=" + step.Agent}, f...)
}
