package bus

import (
	"maps"
	"sync"
	"time"
)

// floodGate bounds what messages that do not authenticate cost a host:
// bytes that are not a frame, oversized requests, bad or untrusted
// signatures. Anyone with access to the broker can send those, as fast as
// the broker lets them, so in each window only the first few are audited
// and logged one by one and answered with a signed refusal (signing is
// work an unauthenticated sender should not be able to buy in bulk); the
// rest are counted by reason and written as one "suppressed" audit record
// and one log line when the window ends.
type floodGate struct {
	window  time.Duration
	records int
	replies int

	mu         sync.Mutex
	start      time.Time
	nRecords   int
	nReplies   int
	suppressed map[string]int
	unanswered int
}

func newFloodGate(window time.Duration, records, replies int) *floodGate {
	return &floodGate{window: window, records: records, replies: replies, suppressed: map[string]int{}}
}

// floodWindow is a window's count of messages that were not recorded one by
// one.
type floodWindow struct {
	start, end time.Time
	counts     map[string]int
	unanswered int
}

// note counts one unauthenticated message refused or dropped for code
// (wantReply when it has a reply subject and is a frame). It reports whether to audit and log it individually, whether a signed
// refusal may be sent, and the previous window's counts when this message
// opened a new window.
func (g *floodGate) note(code string, wantReply bool, now time.Time) (record, reply bool, prev *floodWindow) {
	g.mu.Lock()
	defer g.mu.Unlock()
	prev = g.rollLocked(now, false)
	if g.start.IsZero() {
		g.start = now
	}
	record = g.nRecords < g.records
	if record {
		g.nRecords++
	} else {
		g.suppressed[code]++
	}
	if wantReply {
		reply = g.nReplies < g.replies
		if reply {
			g.nReplies++
		} else {
			g.unanswered++
		}
	}
	return record, reply, prev
}

// roll closes the current window when it has ended (or at once with
// force) and returns its suppressed counts, or nil when there are none.
func (g *floodGate) roll(now time.Time, force bool) *floodWindow {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.rollLocked(now, force)
}

func (g *floodGate) rollLocked(now time.Time, force bool) *floodWindow {
	if g.start.IsZero() || (!force && now.Sub(g.start) < g.window) {
		return nil
	}
	var w *floodWindow
	if len(g.suppressed) > 0 {
		w = &floodWindow{start: g.start, end: now, counts: maps.Clone(g.suppressed), unanswered: g.unanswered}
		clear(g.suppressed)
	}
	g.start, g.nRecords, g.nReplies, g.unanswered = time.Time{}, 0, 0, 0
	return w
}

// digestRing remembers the last n frame digests it was asked about. It
// grows as digests arrive: a responder that is never sent a refused frame
// holds none, which matters when thousands share one process (signet lab)
// and every idle host would otherwise carry a ring of n.
type digestRing struct {
	mu   sync.Mutex
	set  map[string]struct{}
	ring []string
	max  int
	next int
}

func newDigestRing(n int) *digestRing {
	return &digestRing{set: map[string]struct{}{}, max: n}
}

// repeat reports whether digest was seen among the last n; if not, it
// remembers it.
func (d *digestRing) repeat(digest string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.set[digest]; ok {
		return true
	}
	d.set[digest] = struct{}{}
	if len(d.ring) < d.max {
		d.ring = append(d.ring, digest)
		return false
	}
	delete(d.set, d.ring[d.next])
	d.ring[d.next] = digest
	d.next = (d.next + 1) % len(d.ring)
	return false
}
