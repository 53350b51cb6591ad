package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// lazyOpen is how a registry made by LazyRegistry opens its bucket.
type lazyOpen struct {
	js         jetstream.JetStream
	collective string
	log        *slog.Logger

	mu   sync.Mutex
	done bool
	err  error
}

// openTimeout bounds the opening of a lazy registry, as the client bounded
// it when it opened the registry before every command.
const openTimeout = 5 * time.Second

// LazyRegistry returns the registry of collective through js (another
// JetStream domain's when js was made for it), opened on its first use
// rather than here: the client makes one for every command, and most
// commands never read it, or read only the entries of the hosts they name
// (Get, without opening the bucket). Like the client that opened it before
// every command, it opens once: a bucket that does not exist, or that
// cannot be opened (logged as a warning to log), makes every use return an
// error that wraps ErrNoRegistry, and callers fall back to broadcast
// discovery.
func LazyRegistry(js jetstream.JetStream, collective string, log *slog.Logger) *Registry {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Registry{lazy: &lazyOpen{js: js, collective: collective, log: log}}
}

// Open opens the bucket of a registry made by LazyRegistry if it is not
// yet open; an error wraps ErrNoRegistry. Commands that cannot work
// without a registry call it first.
func (r *Registry) Open(ctx context.Context) error {
	_, err := r.bucket(ctx)
	return err
}

// bucket returns the registry's bucket, opening it on the first call.
func (r *Registry) bucket(ctx context.Context) (jetstream.KeyValue, error) {
	l := r.lazy
	if l == nil {
		return r.kv, nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.done {
		// Not the caller's deadline: the result is kept for every later use.
		octx, cancel := context.WithTimeout(context.WithoutCancel(ctx), openTimeout)
		defer cancel()
		opened, err := OpenRegistryIn(octx, l.js, l.collective)
		switch {
		case err == nil:
			r.kv = opened.kv
		case errors.Is(err, ErrNoRegistry):
			l.err = err
		default:
			l.log.Warn("registry unavailable, using broadcast discovery", "err", err)
			l.err = fmt.Errorf("%w: %w", ErrNoRegistry, err)
		}
		l.done = true
	}
	if l.err != nil {
		return nil, l.err
	}
	return r.kv, nil
}

// opened reports whether a lazy registry has opened its bucket (every
// other registry has).
func (r *Registry) opened() bool {
	if r.lazy == nil {
		return true
	}
	r.lazy.mu.Lock()
	defer r.lazy.mu.Unlock()
	return r.lazy.done && r.lazy.err == nil
}

// errNoDirectGet is a registry bucket that cannot be read by a direct get
// without opening it (it does not exist, or does not allow direct gets).
var errNoDirectGet = errors.New("bus: registry: no direct get")

// directGet reads the newest value of key from a registry that has not
// opened its bucket, with one JetStream direct get (the request that
// jetstream's KeyValue.Get sends once it has opened the bucket, without the
// stream info request that opening takes). It returns ErrNotRegistered
// for a key without a value, and errNoDirectGet when nothing answers (no
// such bucket, or one that does not allow direct gets).
func (r *Registry) directGet(ctx context.Context, key string) ([]byte, error) {
	l := r.lazy
	if !keyValid(key) {
		return nil, ErrNotRegistered
	}
	bucket := RegistryBucket(l.collective)
	subj := apiPrefix(l.js.Options()) + "DIRECT.GET.KV_" + bucket + ".$KV." + bucket + "." + key
	m, err := l.js.Conn().RequestWithContext(ctx, subj, nil)
	if errors.Is(err, nats.ErrNoResponders) {
		return nil, errNoDirectGet
	}
	if err != nil {
		return nil, fmt.Errorf("registry: get %s: %w", key, err)
	}
	if len(m.Data) == 0 && m.Header.Get("Status") != "" {
		if m.Header.Get("Status") == "404" {
			return nil, ErrNotRegistered
		}
		return nil, fmt.Errorf("registry: get %s: %s %s", key, m.Header.Get("Status"), m.Header.Get("Description"))
	}
	if m.Header.Get(jetstream.StreamHeader) == "" {
		return nil, fmt.Errorf("registry: get %s: not a direct get reply", key)
	}
	// A delete or purge marker, or a marker the server wrote, is no entry.
	if m.Header.Get("KV-Operation") != "" || m.Header.Get(jetstream.MarkerReasonHeader) != "" {
		return nil, ErrNotRegistered
	}
	return m.Data, nil
}

// apiPrefix is the JetStream API prefix of o, as jetstream uses it.
func apiPrefix(o jetstream.JetStreamOptions) string {
	switch {
	case o.APIPrefix != "":
		return strings.TrimSuffix(o.APIPrefix, ".") + "."
	case o.Domain != "":
		return "$JS." + o.Domain + ".API."
	}
	return jetstream.DefaultAPIPrefix
}

// keyValid is jetstream's check of a key: no empty tokens, no wildcards,
// nothing that would change the subject of the direct get.
func keyValid(key string) bool {
	if key == "" || key[0] == '.' || key[len(key)-1] == '.' {
		return false
	}
	for i := 0; i < len(key); i++ {
		c := key[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-/_=.", c) >= 0) {
			return false
		}
	}
	return true
}
