package workflows

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// KVConfig configures a KVStore.
type KVConfig struct {
	// RunsBucket holds one key per run; default "signet_runs".
	RunsBucket string
	// LocksBucket holds one key per locked app/env; default "signet_locks".
	LocksBucket string
	// LockTTL is how long a lock outlives its last refresh (the bucket's
	// max age); the holder refreshes it every third of it. Default 2m.
	LockTTL time.Duration
	// Log receives lease refresh failures; default discards.
	Log *slog.Logger
}

// KVStore keeps run state and locks in JetStream key-value buckets on the
// broker, so any operator's CLI can see, resume or be refused a run.
type KVStore struct {
	runs, locks jetstream.KeyValue
	ttl         time.Duration
	log         *slog.Logger
}

var _ Store = (*KVStore)(nil)

// NewKVStore creates (or updates) the buckets and returns the store.
func NewKVStore(ctx context.Context, js jetstream.JetStream, cfg KVConfig) (*KVStore, error) {
	if cfg.RunsBucket == "" {
		cfg.RunsBucket = "signet_runs"
	}
	if cfg.LocksBucket == "" {
		cfg.LocksBucket = "signet_locks"
	}
	if cfg.LockTTL == 0 {
		cfg.LockTTL = 2 * time.Minute
	}
	if cfg.LockTTL < time.Second {
		return nil, fmt.Errorf("workflows: lock ttl: want at least 1s, found %s", cfg.LockTTL)
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	runs, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: cfg.RunsBucket, Description: "signet workflow runs", History: 1})
	if err != nil {
		return nil, fmt.Errorf("workflows: runs bucket %s: %w", cfg.RunsBucket, err)
	}
	locks, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: cfg.LocksBucket, Description: "signet workflow locks", History: 1, TTL: cfg.LockTTL})
	if err != nil {
		return nil, fmt.Errorf("workflows: locks bucket %s: %w", cfg.LocksBucket, err)
	}
	return &KVStore{runs: runs, locks: locks, ttl: cfg.LockTTL, log: cfg.Log}, nil
}

func runKey(id string) (string, error) {
	if !ValidName(id) {
		return "", fmt.Errorf("run id: want lowercase letters and digits, found %q", id)
	}
	return id, nil
}

// lockKey turns "app/env" into a KV key; every part must be a valid name.
func lockKey(name string) (string, error) {
	for _, p := range strings.Split(name, "/") {
		if !ValidName(p) {
			return "", fmt.Errorf("lock name: want app/env of lowercase names, found %q", name)
		}
	}
	return strings.ReplaceAll(name, "/", "."), nil
}

// Save implements Store.
func (s *KVStore) Save(ctx context.Context, st *RunState) error {
	key, err := runKey(st.ID)
	if err != nil {
		return fmt.Errorf("save run: %w", err)
	}
	b, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("save run %s: %w", st.ID, err)
	}
	if _, err := s.runs.Put(ctx, key, b); err != nil {
		return fmt.Errorf("save run %s: %w", st.ID, err)
	}
	return nil
}

// Load implements Store.
func (s *KVStore) Load(ctx context.Context, id string) (*RunState, error) {
	key, err := runKey(id)
	if err != nil {
		return nil, fmt.Errorf("load run: %w", err)
	}
	e, err := s.runs.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, fmt.Errorf("load run %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("load run %s: %w", id, err)
	}
	var st RunState
	if err := json.Unmarshal(e.Value(), &st); err != nil {
		return nil, fmt.Errorf("load run %s: %w", id, err)
	}
	return &st, nil
}

// Lock implements Store: Create on the key succeeds only when nobody holds
// it (or the holder's entry aged out of the bucket after LockTTL without a
// refresh). A goroutine refreshes the lease until unlock.
func (s *KVStore) Lock(ctx context.Context, name string, lease Lease) (func(context.Context) error, error) {
	key, err := lockKey(name)
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(lease)
	if err != nil {
		return nil, err
	}
	rev, err := s.locks.Create(ctx, key, b)
	if errors.Is(err, jetstream.ErrKeyExists) {
		e, gerr := s.locks.Get(ctx, key)
		if gerr != nil {
			return nil, fmt.Errorf("%s of %s is locked (holder unreadable: %w)", lease.Kind, name, gerr)
		}
		var cur Lease
		if jerr := json.Unmarshal(e.Value(), &cur); jerr != nil {
			return nil, fmt.Errorf("%s of %s is locked (holder unreadable: %w)", lease.Kind, name, jerr)
		}
		return nil, &LockError{Name: name, Holder: cur}
	}
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", name, err)
	}
	stop := make(chan struct{})
	done := make(chan uint64)
	go func() {
		t := time.NewTicker(s.ttl / 3)
		defer t.Stop()
		for {
			select {
			case <-stop:
				done <- rev
				return
			case <-t.C:
				rctx, cancel := context.WithTimeout(context.Background(), s.ttl/3)
				nrev, err := s.locks.Update(rctx, key, b, rev)
				cancel()
				if err != nil {
					s.log.Error("lock refresh failed", "lock", name, "run", lease.Run, "err", err)
					continue
				}
				rev = nrev
			}
		}
	}()
	var released bool
	return func(ctx context.Context) error {
		if released {
			return nil
		}
		released = true
		close(stop)
		last := <-done
		if err := s.locks.Delete(ctx, key, jetstream.LastRevision(last)); err != nil {
			return fmt.Errorf("unlock %s: %w", name, err)
		}
		return nil
	}, nil
}
