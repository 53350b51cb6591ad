package bus

import (
	"container/heap"
	"errors"
	"sync"
	"time"
)

// ErrReplayCacheFull is returned when the replay cache holds its maximum of
// unexpired ids. The request is refused rather than an id forgotten early,
// which would reopen a replay window.
var ErrReplayCacheFull = errors.New("bus: replay cache is full")

// replayCache remembers request ids until the request could no longer pass
// the freshness check anyway, so memory is bounded by max and by the rate
// of valid requests times the longest allowed TTL.
type replayCache struct {
	mu   sync.Mutex
	max  int
	seen map[string]time.Time
	exp  expiryHeap
}

func newReplayCache(max int) *replayCache {
	return &replayCache{max: max, seen: make(map[string]time.Time)}
}

// add records id until expires. It reports false when id was seen already.
func (c *replayCache) add(id string, expires, now time.Time) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.exp.Len() > 0 && !c.exp[0].at.After(now) {
		e := heap.Pop(&c.exp).(expiry)
		if c.seen[e.id].Equal(e.at) {
			delete(c.seen, e.id)
		}
	}
	if _, dup := c.seen[id]; dup {
		return false, nil
	}
	if len(c.seen) >= c.max {
		return false, ErrReplayCacheFull
	}
	c.seen[id] = expires
	heap.Push(&c.exp, expiry{id: id, at: expires})
	return true, nil
}

type expiry struct {
	id string
	at time.Time
}

type expiryHeap []expiry

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h expiryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *expiryHeap) Push(x any)        { *h = append(*h, x.(expiry)) }
func (h *expiryHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
