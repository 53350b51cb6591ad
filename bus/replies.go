package bus

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"
)

// replyMux receives the replies of every request a client sends on one
// wildcard subscription (PREFIX.*) and routes them by the last subject
// token to the request that waits for them. A subscription per request
// would cost a SUB and UNSUB round on the broker and, in nats.go, a large
// channel allocation per request.
type replyMux struct {
	nc     *nats.Conn
	once   sync.Once
	err    error
	prefix string
	sub    *nats.Subscription

	mu     sync.Mutex
	routes map[string]*replyQueue
}

func (m *replyMux) start() error {
	m.once.Do(func() {
		m.prefix = m.nc.NewInbox()
		m.routes = map[string]*replyQueue{}
		m.sub, m.err = m.nc.Subscribe(m.prefix+".*", m.route)
		if m.err == nil {
			m.err = m.sub.SetPendingLimits(-1, 256<<20)
		}
		if m.err != nil {
			m.err = fmt.Errorf("subscribe to replies: %w", m.err)
		}
	})
	return m.err
}

func (m *replyMux) route(msg *nats.Msg) {
	token := strings.TrimPrefix(msg.Subject, m.prefix+".")
	m.mu.Lock()
	q := m.routes[token]
	m.mu.Unlock()
	if q != nil {
		q.push(msg)
	}
}

// inboxes is a set of reply subjects that feed one queue, so that a
// request sent to many hosts can tell which host's publish a "no
// responders" status answers.
type inboxes struct {
	m      *replyMux
	q      *replyQueue
	tokens []string
}

// open returns an empty set of inboxes; close it when the request is done.
func (m *replyMux) open() (*inboxes, error) {
	if err := m.start(); err != nil {
		return nil, err
	}
	return &inboxes{m: m, q: &replyQueue{notify: make(chan struct{}, 1)}}, nil
}

// add registers a new inbox of the set and returns its subject.
func (s *inboxes) add() string {
	token := nuid.Next()
	s.m.mu.Lock()
	s.m.routes[token] = s.q
	s.m.mu.Unlock()
	s.tokens = append(s.tokens, token)
	return s.m.prefix + "." + token
}

func (s *inboxes) close() {
	s.m.mu.Lock()
	for _, t := range s.tokens {
		delete(s.m.routes, t)
	}
	s.m.mu.Unlock()
}

// replyQueue is an unbounded queue of replies: a burst of thousands waits
// here for the verifiers instead of being dropped as a slow consumer.
type replyQueue struct {
	mu     sync.Mutex
	msgs   []*nats.Msg
	notify chan struct{}
}

func (q *replyQueue) push(m *nats.Msg) {
	q.mu.Lock()
	q.msgs = append(q.msgs, m)
	q.mu.Unlock()
	select {
	case q.notify <- struct{}{}:
	default:
	}
}

// next waits for a reply or for ctx to end.
func (q *replyQueue) next(ctx context.Context) (*nats.Msg, bool) {
	for {
		q.mu.Lock()
		if len(q.msgs) > 0 {
			m := q.msgs[0]
			q.msgs[0] = nil
			q.msgs = q.msgs[1:]
			more := len(q.msgs) > 0
			q.mu.Unlock()
			if more { // wake another waiting verifier
				select {
				case q.notify <- struct{}{}:
				default:
				}
			}
			return m, true
		}
		q.mu.Unlock()
		select {
		case <-q.notify:
		case <-ctx.Done():
			return nil, false
		}
	}
}
