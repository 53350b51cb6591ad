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

// ErrReplayKeyQuota is returned when one key already holds its share of the
// replay cache: it must wait for its own requests to expire, and cannot
// crowd out other keys.
var ErrReplayKeyQuota = errors.New("bus: this key holds its share of the replay cache")

// replyKeepBytes bounds the signed reply frames the cache keeps to answer
// duplicates. Past it, a duplicate of a finished request is refused as a
// replay instead; its result is in the audit log.
const replyKeepBytes = 16 << 20

// seenState is what the cache knows about an id when it is offered again.
type seenState int

const (
	seenNew      seenState = iota // admitted: run it
	seenDone                      // same bytes, finished: re-send the kept reply
	seenRunning                   // same bytes, still running
	seenReplay                    // other bytes under the id, or the reply is no longer kept
	seenRejected                  // not admitted: cache full or key over quota
)

// replayCache remembers the ids of requests this responder admitted to
// run, until the request could no longer pass the freshness check anyway.
// Only requests that passed authentication, the protocol checks, policy
// and parameter validation are admitted, so a key cannot fill it with
// requests it is not allowed to run. Memory is bounded by max entries, of
// which one key may hold perKey, and by replyKeepBytes of kept replies.
type replayCache struct {
	mu         sync.Mutex
	max        int
	perKey     int
	seen       map[string]*replayEntry
	byKey      map[string]int
	frameBytes int
	exp        expiryHeap
}

type replayEntry struct {
	digest  string
	key     string
	expires time.Time
	done    bool
	frame   []byte
}

func newReplayCache(max, perKey int) *replayCache {
	if perKey <= 0 || perKey > max {
		perKey = max
	}
	return &replayCache{max: max, perKey: perKey, seen: make(map[string]*replayEntry), byKey: make(map[string]int)}
}

// admit records id, the digest of its request frame and the signing key
// until expires, unless the id is known already. For a finished duplicate
// it returns the kept signed reply.
func (c *replayCache) admit(id, digest, key string, expires, now time.Time) (seenState, []byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.expire(now)
	if e, dup := c.seen[id]; dup {
		switch {
		case e.digest != digest:
			return seenReplay, nil, nil
		case !e.done:
			return seenRunning, nil, nil
		case e.frame == nil:
			return seenReplay, nil, nil
		}
		return seenDone, e.frame, nil
	}
	if len(c.seen) >= c.max {
		return seenRejected, nil, ErrReplayCacheFull
	}
	if c.byKey[key] >= c.perKey {
		return seenRejected, nil, ErrReplayKeyQuota
	}
	c.seen[id] = &replayEntry{digest: digest, key: key, expires: expires}
	c.byKey[key]++
	heap.Push(&c.exp, expiry{id: id, at: expires})
	return seenNew, nil, nil
}

// finish marks id done and keeps its signed reply while there is room.
func (c *replayCache) finish(id string, frame []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.seen[id]
	if !ok {
		return
	}
	e.done = true
	if frame != nil && c.frameBytes+len(frame) <= replyKeepBytes {
		e.frame = frame
		c.frameBytes += len(frame)
	}
}

// len is the number of ids remembered.
func (c *replayCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.seen)
}

// forget drops an admitted id whose action never started, so that the
// same signed request may run once when it is sent again.
func (c *replayCache) forget(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.seen[id]; ok {
		c.drop(id, e)
	}
}

func (c *replayCache) expire(now time.Time) {
	for c.exp.Len() > 0 && !c.exp[0].at.After(now) {
		x := heap.Pop(&c.exp).(expiry)
		if e, ok := c.seen[x.id]; ok && e.expires.Equal(x.at) {
			c.drop(x.id, e)
		}
	}
}

func (c *replayCache) drop(id string, e *replayEntry) {
	delete(c.seen, id)
	c.frameBytes -= len(e.frame)
	if c.byKey[e.key]--; c.byKey[e.key] <= 0 {
		delete(c.byKey, e.key)
	}
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
