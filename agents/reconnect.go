package agents

import (
	"log/slog"
	"math/rand/v2"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// Reconnect timing of signetd. The client (signet) retries every second,
// so signetd must not lag behind it: a request sent just after a broker
// restart should find the hosts subscribed again.
const (
	// reconnectFirst is the wait before the first reconnect attempt; it
	// doubles per failed pass over the broker URLs up to reconnectCap.
	reconnectFirst = 250 * time.Millisecond
	reconnectCap   = time.Second
	// reconnectJitter is added at random to every wait, so that a fleet
	// does not reconnect in lockstep.
	reconnectJitter = 250 * time.Millisecond
)

// reconnectDelay is the wait before reconnect pass attempts (1-based):
// 250 ms, 500 ms, then 1 s, each plus up to 250 ms of jitter.
func reconnectDelay(attempts int) time.Duration {
	d := reconnectFirst
	for i := 1; i < attempts && d < reconnectCap; i++ {
		d *= 2
	}
	d = min(d, reconnectCap)
	return d + time.Duration(rand.Int64N(int64(reconnectJitter)))
}

// reconnectLog logs failed reconnect attempts at warn level with the
// broker URLs and the error (which names the address that failed), on
// attempts 1, 2, 4, 8, ... so that a long outage is visible without
// flooding the log. It is reset by a successful reconnect.
type reconnectLog struct {
	log  *slog.Logger
	urls string

	mu       sync.Mutex
	failures int
	next     int
	since    time.Time
}

func newReconnectLog(log *slog.Logger, urls []string) *reconnectLog {
	return &reconnectLog{log: log, urls: redactURLs(urls), next: 1}
}

func (r *reconnectLog) failed(_ *nats.Conn, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failures == 0 {
		r.since = time.Now()
	}
	r.failures++
	if r.failures < r.next {
		return
	}
	r.next *= 2
	r.log.Warn("cannot reach the broker; retrying about every second", "url", r.urls, "err", err,
		"attempts", r.failures, "down_for", time.Since(r.since).Round(time.Second).String())
}

func (r *reconnectLog) reconnected(nc *nats.Conn) {
	r.mu.Lock()
	n := r.failures
	r.failures, r.next = 0, 1
	r.mu.Unlock()
	r.log.Info("reconnected to broker", "url", nc.ConnectedUrlRedacted(), "failed_attempts", n)
}

// redactURLs joins the broker URLs with any password removed.
func redactURLs(urls []string) string {
	out := make([]string, 0, len(urls))
	for _, u := range urls {
		p, err := url.Parse(u)
		if err == nil && p.User != nil {
			if _, has := p.User.Password(); has {
				p.User = url.UserPassword(p.User.Username(), "xxxxx")
			}
			u = p.String()
		}
		out = append(out, u)
	}
	return strings.Join(out, ",")
}
