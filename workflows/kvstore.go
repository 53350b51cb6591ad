package workflows

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/crypto/ssh"

	"github.com/signetbus/signet/internal/replicas"
)

// KVConfig configures a KVStore.
type KVConfig struct {
	// RunsBucket holds one key per run; default "signet_runs".
	RunsBucket string
	// LocksBucket holds one key per locked app/env; default "signet_locks".
	LocksBucket string
	// LockTTL is how long a lock outlives its last refresh (the bucket's
	// max age); the holder refreshes it every third of it, and before
	// every step. Default 2m.
	LockTTL time.Duration
	// Signer signs every run state written (SSHSIG, namespace
	// RunStateNamespace): the operator's key. Required to Save; a store
	// without one can only lock and load.
	Signer ssh.Signer
	// ResumeKeys are the keys besides Signer's whose run states may be
	// resumed (the client config's resume_keys). A state signed by any
	// other key, or not signed, is refused by Load.
	ResumeKeys []ssh.PublicKey
	// Log receives lease refresh failures; default discards.
	Log *slog.Logger
	// Replicas is how many copies the broker keeps of both buckets;
	// replicas.Auto (0): 3 on a cluster, 1 on a single broker.
	Replicas int
}

// KVStore keeps run state and locks in JetStream key-value buckets on the
// broker, so any operator's CLI can see, resume or be refused a run. The
// broker is not trusted with the state: every state is signed by the
// operator and verified before it is used. A bucket lost with the
// broker's storage is created again on the next use.
type KVStore struct {
	js      jetstream.JetStream
	cfg     KVConfig
	trusted []ssh.PublicKey

	mu          sync.Mutex
	runs, locks jetstream.KeyValue
}

var (
	_ Store   = (*KVStore)(nil)
	_ Updater = (*KVStore)(nil)
)

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
	s := &KVStore{js: js, cfg: cfg, trusted: cfg.ResumeKeys}
	if cfg.Signer != nil {
		s.trusted = append([]ssh.PublicKey{cfg.Signer.PublicKey()}, cfg.ResumeKeys...)
	}
	if _, err := s.runsKV(ctx, false); err != nil {
		return nil, err
	}
	if _, err := s.locksKV(ctx, false); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *KVStore) runsKV(ctx context.Context, again bool) (jetstream.KeyValue, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.runs != nil && !again {
		return s.runs, nil
	}
	kv, err := openOrCreate(ctx, s.js, jetstream.KeyValueConfig{Bucket: s.cfg.RunsBucket, Description: "signet workflow runs", History: 1}, s.cfg.Replicas)
	if err != nil {
		return nil, fmt.Errorf("workflows: runs bucket %s: %w", s.cfg.RunsBucket, err)
	}
	s.runs = kv
	return kv, nil
}

func (s *KVStore) locksKV(ctx context.Context, again bool) (jetstream.KeyValue, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.locks != nil && !again {
		return s.locks, nil
	}
	kv, err := openOrCreate(ctx, s.js, jetstream.KeyValueConfig{Bucket: s.cfg.LocksBucket, Description: "signet workflow locks", History: 1, TTL: s.cfg.LockTTL}, s.cfg.Replicas)
	if err != nil {
		return nil, fmt.Errorf("workflows: locks bucket %s: %w", s.cfg.LocksBucket, err)
	}
	s.locks = kv
	return kv, nil
}

// openOrCreate opens the bucket when it exists with cfg's TTL, and only
// otherwise creates or updates it: on a locked-down broker operators may
// not create or change streams (the broker provisions the buckets), and a
// denied request is not failed by the client, only timed out. A bucket it
// creates gets n copies (replicas.KeyValue); an existing one is not
// scaled up here: `signet broker provision` does that as an admin.
func openOrCreate(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig, n int) (jetstream.KeyValue, error) {
	kv, err := js.KeyValue(ctx, cfg.Bucket)
	if err == nil {
		if st, serr := kv.Status(ctx); serr == nil && st.TTL() == cfg.TTL {
			return kv, nil
		}
	}
	return replicas.KeyValue(ctx, js, cfg, n)
}

// bucketGone reports an error that means the bucket's stream is missing,
// as after a broker restart that lost its JetStream storage.
func bucketGone(err error) bool {
	return errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, jetstream.ErrBucketNotFound) ||
		errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders)
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

// Save implements Store: the state is signed with the operator's key. A
// missing bucket is created again.
func (s *KVStore) Save(ctx context.Context, st *RunState) error {
	key, err := runKey(st.ID)
	if err != nil {
		return fmt.Errorf("save run: %w", err)
	}
	b, err := SealRunState(s.cfg.Signer, st)
	if err != nil {
		return fmt.Errorf("save run %s: %w", st.ID, err)
	}
	kv, err := s.runsKV(ctx, false)
	if err != nil {
		return fmt.Errorf("save run %s: %w", st.ID, err)
	}
	_, err = kv.Put(ctx, key, b)
	if err != nil && bucketGone(err) {
		if kv, err = s.runsKV(ctx, true); err == nil {
			_, err = kv.Put(ctx, key, b)
		}
	}
	if errors.Is(err, nats.ErrConnectionClosed) {
		return fmt.Errorf("save run %s: %w: %w", st.ID, ErrStoreClosed, err)
	}
	if err != nil {
		return fmt.Errorf("save run %s: %w", st.ID, err)
	}
	return nil
}

// Load implements Store: the state's signature must verify and be made by
// the operator's key or one of ResumeKeys, and the state must be valid.
func (s *KVStore) Load(ctx context.Context, id string) (*RunState, error) {
	key, err := runKey(id)
	if err != nil {
		return nil, fmt.Errorf("load run: %w", err)
	}
	kv, err := s.runsKV(ctx, false)
	if err != nil {
		return nil, fmt.Errorf("load run %s: %w", id, err)
	}
	e, err := kv.Get(ctx, key)
	if err != nil && bucketGone(err) {
		if kv, err = s.runsKV(ctx, true); err == nil {
			e, err = kv.Get(ctx, key)
		}
	}
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, fmt.Errorf("load run %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("load run %s: %w", id, err)
	}
	st, _, err := OpenRunState(e.Value(), s.trusted)
	if err != nil {
		return nil, fmt.Errorf("load run %s: %w", id, err)
	}
	if st.ID != id {
		return nil, fmt.Errorf("load run %s: %w: the stored state is of run %s", id, ErrStateInvalid, st.ID)
	}
	return st, nil
}

// Update implements Updater with the bucket's compare-and-set: the state
// is read with its revision, and written only if the key still has that
// revision; after a concurrent write it is read (and verified) again.
func (s *KVStore) Update(ctx context.Context, id string, fn func(*RunState) error) error {
	key, err := runKey(id)
	if err != nil {
		return fmt.Errorf("update run: %w", err)
	}
	kv, err := s.runsKV(ctx, false)
	if err != nil {
		return fmt.Errorf("update run %s: %w", id, err)
	}
	for range updateAttempts {
		e, err := kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return fmt.Errorf("load run %s: %w", id, ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("load run %s: %w", id, err)
		}
		st, _, err := OpenRunState(e.Value(), s.trusted)
		if err != nil {
			return fmt.Errorf("load run %s: %w", id, err)
		}
		if st.ID != id {
			return fmt.Errorf("load run %s: %w: the stored state is of run %s", id, ErrStateInvalid, st.ID)
		}
		if err := fn(st); err != nil {
			return err
		}
		b, err := SealRunState(s.cfg.Signer, st)
		if err != nil {
			return fmt.Errorf("save run %s: %w", id, err)
		}
		_, err = kv.Update(ctx, key, b, e.Revision())
		if err == nil {
			return nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return fmt.Errorf("save run %s: %w", id, err)
		}
		// Written by someone else since the read: read it again.
	}
	return fmt.Errorf("save run %s: %w", id, ErrConflict)
}

// Lock implements Store: Create on the key succeeds only when nobody holds
// it (or the holder's entry aged out of the bucket after LockTTL without a
// refresh). A goroutine refreshes the lease until Unlock; the engine
// renews it before every step. Every refresh is a compare-and-set on the
// revision this run wrote last, so a deleted or taken lock is noticed.
func (s *KVStore) Lock(ctx context.Context, name string, lease Lease) (Held, error) {
	key, err := lockKey(name)
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(lease)
	if err != nil {
		return nil, err
	}
	kv, err := s.locksKV(ctx, false)
	if err != nil {
		return nil, err
	}
	rev, err := kv.Create(ctx, key, b)
	if err != nil && bucketGone(err) {
		if kv, err = s.locksKV(ctx, true); err == nil {
			rev, err = kv.Create(ctx, key, b)
		}
	}
	if errors.Is(err, jetstream.ErrKeyExists) {
		e, gerr := kv.Get(ctx, key)
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
	h := &kvHeld{s: s, kv: kv, name: name, key: key, val: b, run: lease.Run, rev: rev, confirmed: time.Now(), stop: make(chan struct{}), done: make(chan struct{})}
	go h.refresh()
	return h, nil
}

type kvHeld struct {
	s         *KVStore
	kv        jetstream.KeyValue
	name, key string
	val       []byte
	run       string
	stop      chan struct{}
	done      chan struct{}

	mu        sync.Mutex
	rev       uint64
	confirmed time.Time // last time the broker confirmed the lease
	lost      error
	released  bool
}

func (h *kvHeld) refresh() {
	defer close(h.done)
	t := time.NewTicker(h.s.cfg.LockTTL / 3)
	defer t.Stop()
	for {
		select {
		case <-h.stop:
			return
		case <-t.C:
			if err := h.Renew(context.Background()); err != nil {
				select {
				case <-h.stop:
					return // released meanwhile
				default:
				}
				h.s.cfg.Log.Error("run lock lost: the run starts no new step", "lock", h.name, "run", h.run, "err", err)
				return
			}
		}
	}
}

// Renew implements Held: a compare-and-set of the lease on the revision
// this run wrote last. A broker that does not answer is retried until
// half the lock's TTL has passed since the last confirmation; then the
// lease is given up, since another run may take it when it expires.
func (h *kvHeld) Renew(ctx context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.lost != nil {
		return h.lost
	}
	if h.released {
		return &LockLostError{Name: h.name, Run: h.run, Err: errors.New("released")}
	}
	deadline := h.confirmed.Add(h.s.cfg.LockTTL / 2)
	wait := 100 * time.Millisecond
	for {
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), min(5*time.Second, time.Until(deadline)+time.Millisecond))
		rev, err := h.kv.Update(actx, h.key, h.val, h.rev)
		cancel()
		if err == nil {
			h.rev, h.confirmed = rev, time.Now()
			return nil
		}
		var lost bool
		var apiErr *jetstream.APIError
		wrongRev := errors.Is(err, jetstream.ErrKeyExists) ||
			(errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence)
		if wrongRev {
			// An earlier renewal may have been applied with its answer
			// lost in a broker restart: the lease then holds exactly our
			// value at a newer revision. Take that revision and go on.
			gctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
			e, gerr := h.kv.Get(gctx, h.key)
			cancel()
			if gerr == nil && e.Revision() > h.rev && bytes.Equal(e.Value(), h.val) {
				h.rev, h.confirmed = e.Revision(), e.Created()
				continue
			}
		}
		switch {
		case wrongRev, errors.Is(err, jetstream.ErrKeyNotFound), errors.Is(err, jetstream.ErrKeyDeleted):
			lost = true
		case errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamNotFound:
			lost = true
		case errors.Is(err, jetstream.ErrStreamNotFound), errors.Is(err, jetstream.ErrBucketNotFound), errors.Is(err, nats.ErrConnectionClosed):
			lost = true
		case bucketGone(err):
			// No stream answered: a broker that lost its storage, or one
			// still starting. Ask whether the bucket exists.
			bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
			_, berr := h.s.js.KeyValue(bctx, h.s.cfg.LocksBucket)
			cancel()
			lost = errors.Is(berr, jetstream.ErrBucketNotFound)
		}
		if lost {
			h.lost = &LockLostError{Name: h.name, Run: h.run, Err: fmt.Errorf("the lock was deleted, expired or taken by another run (%w)", err)}
			return h.lost
		}
		if time.Now().Add(wait).After(deadline) {
			h.lost = &LockLostError{Name: h.name, Run: h.run, Err: fmt.Errorf("the broker did not confirm the lock for %s (%w)", time.Since(h.confirmed).Round(time.Second), err)}
			return h.lost
		}
		select {
		case <-ctx.Done():
			return &LockLostError{Name: h.name, Run: h.run, Err: fmt.Errorf("not confirmed: %w", ctx.Err())}
		case <-time.After(wait):
		}
		wait = min(wait*2, 2*time.Second)
	}
}

// Unlock implements Held.
func (h *kvHeld) Unlock(ctx context.Context) error {
	h.mu.Lock()
	if h.released {
		h.mu.Unlock()
		return nil
	}
	h.released = true
	lost := h.lost
	h.mu.Unlock()
	close(h.stop)
	<-h.done
	if lost != nil {
		return nil // nothing of ours to release
	}
	h.mu.Lock()
	last := h.rev
	h.mu.Unlock()
	if err := h.kv.Delete(ctx, h.key, jetstream.LastRevision(last)); err != nil {
		return fmt.Errorf("unlock %s: %w", h.name, err)
	}
	return nil
}
