package bus

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/crypto/ssh"

	"github.com/signetbus/signet/internal/replicas"
)

// Registration is what a responder publishes about itself in the registry.
type Registration struct {
	Identity   string            `json:"identity"`
	Collective string            `json:"collective"`
	Facts      map[string]string `json:"facts"`
	Agents     []string          `json:"agents"`
	Classes    []string          `json:"classes,omitempty"`
	// HostKey is the host's public key in authorized_keys form. It is
	// informational: clients trust host keys from their known_hosts file,
	// never from the registry. The entry itself is signed by the host
	// (SignRegistration), and clients ignore entries that do not verify.
	HostKey string `json:"host_key"`
	// Version is the signetd release (internal/version.Version).
	Version string `json:"version"`
	// Protocol is the newest protocol version the host speaks
	// (ProtocolVersion); 0 in the entries of hosts older than this field,
	// which speak version 1.
	Protocol int       `json:"protocol,omitempty"`
	Started  time.Time `json:"started"`
	Updated  time.Time `json:"updated"`

	// BootID is the id of the host's current boot (Linux's
	// /proc/sys/kernel/random/boot_id): a new one after a reboot, the same
	// after a reconnect or a signetd restart. Empty when unknown.
	BootID string `json:"boot_id,omitempty"`

	// Shards are the shard counts at which the host listens on its shard
	// subject (ShardSubject): a client publishes a chunk of a large
	// request once per shard only to hosts that list the count here, and
	// to the others on their own subjects. Empty for hosts older than
	// this field.
	Shards []int `json:"shards,omitempty"`
}

// ProtocolOf is the protocol version a registration says its host speaks.
func (r *Registration) ProtocolOf() int {
	if r.Protocol == 0 {
		return 1
	}
	return r.Protocol
}

// Node returns the registration as a filter target.
func (r *Registration) Node() *Node {
	return &Node{Identity: r.Identity, Facts: r.Facts, Agents: r.Agents, Classes: r.Classes}
}

// Registry is the fleet registry: a JetStream key-value bucket with one key
// per responder, expiring when a responder stops refreshing it.
type Registry struct {
	kv jetstream.KeyValue // nil until a lazy registry opens it
	// lazy is set by LazyRegistry: the bucket is opened on first use.
	lazy *lazyOpen
	// keys and report are set by Verify; verified caches what verified.
	mu       sync.Mutex
	keys     HostKeys
	report   func(key string, err error)
	verified map[string]verifiedEntry
}

// ErrNoRegistry is returned by OpenRegistry when the bucket does not exist
// or the broker has no JetStream; clients then fall back to broadcast
// discovery.
var ErrNoRegistry = errors.New("bus: no registry on this broker")

// RegistryConfig is the registry bucket's configuration. A locked-down
// broker creates the bucket with it in advance (hosts may not create or
// change streams there).
func RegistryConfig(collective string, ttl time.Duration) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:      RegistryBucket(collective),
		Description: "signet responders of collective " + collective,
		TTL:         ttl,
		History:     1,
	}
}

// CreateRegistry opens the registry bucket, creating it when missing, or
// changing it when its TTL is not ttl. ttl is how long an entry outlives
// its last refresh; n is the number of copies the broker keeps of a bucket
// it creates (replicas.Auto: 3 on a cluster, 1 otherwise). An existing
// bucket with the right TTL is opened without changing it, which is all a
// host may do on a locked-down broker (there the broker provisions it).
func CreateRegistry(ctx context.Context, nc *nats.Conn, collective string, ttl time.Duration, n int) (*Registry, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	kv, err := js.KeyValue(ctx, RegistryBucket(collective))
	if err == nil {
		st, serr := kv.Status(ctx)
		if serr == nil && st.TTL() == ttl {
			return &Registry{kv: kv}, nil
		}
	} else if !errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, fmt.Errorf("registry: open bucket: %w", err)
	}
	kv, err = replicas.KeyValue(ctx, js, RegistryConfig(collective, ttl), n)
	if err != nil {
		return nil, fmt.Errorf("registry: create or update bucket %s with a TTL of %s (on a locked-down broker an admin creates it; set registry_ttl to the bucket's TTL): %w", RegistryBucket(collective), ttl, err)
	}
	return &Registry{kv: kv}, nil
}

// OpenRegistry opens an existing registry bucket.
func OpenRegistry(ctx context.Context, nc *nats.Conn, collective string) (*Registry, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	return OpenRegistryIn(ctx, js, collective)
}

// OpenRegistryIn opens an existing registry bucket through js: another
// JetStream domain's (a DR site's) when js was made for it.
func OpenRegistryIn(ctx context.Context, js jetstream.JetStream, collective string) (*Registry, error) {
	kv, err := js.KeyValue(ctx, RegistryBucket(collective))
	if err != nil {
		if errors.Is(err, jetstream.ErrBucketNotFound) || errors.Is(err, jetstream.ErrJetStreamNotEnabled) {
			return nil, ErrNoRegistry
		}
		return nil, fmt.Errorf("registry: %w", err)
	}
	return &Registry{kv: kv}, nil
}

// Put publishes a registration, signed by the host's key (signer).
func (r *Registry) Put(ctx context.Context, signer ssh.Signer, reg *Registration) error {
	b, err := SignRegistration(signer, reg)
	if err != nil {
		return err
	}
	kv, err := r.bucket(ctx)
	if err != nil {
		return err
	}
	if _, err := kv.Put(ctx, reg.Identity, b); err != nil {
		return fmt.Errorf("registry: put %s: %w", reg.Identity, err)
	}
	return nil
}

// Delete removes a registration, as a responder does when it stops.
func (r *Registry) Delete(ctx context.Context, identity string) error {
	kv, err := r.bucket(ctx)
	if err != nil {
		return err
	}
	if err := kv.Delete(ctx, identity); err != nil {
		return fmt.Errorf("registry: delete %s: %w", identity, err)
	}
	return nil
}

// List returns every live registration, sorted by identity.
func (r *Registry) List(ctx context.Context) ([]*Registration, error) {
	var out []*Registration
	err := attempts(ctx, func(actx context.Context) (err error) {
		out, err = r.list(actx)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("registry: list: %w", err)
	}
	return out, nil
}

// attempts runs fn with a context bounded by listAttempt, again and again
// while fn times out and ctx allows. A JetStream request sent just before
// the broker went away is never answered, and nats.go waits for it until
// the context ends: without a bound per attempt, a step would wait out its
// whole timeout for a registry that is back within a second.
func attempts(ctx context.Context, fn func(context.Context) error) error {
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, listAttempt)
		err := fn(actx)
		cancel()
		switch {
		case err == nil:
			return nil
		case ctx.Err() != nil:
			return fmt.Errorf("%w (after %d attempts of at most %s)", ctx.Err(), attempt, listAttempt)
		case errors.Is(err, ErrNoRegistry):
			// Final: a lazy registry that could not open keeps that
			// answer (its error may wrap the timeout of its opening, and
			// would otherwise be retried at once, without end).
			return err
		case !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, nats.ErrTimeout):
			return err
		}
	}
}

// listAttempt bounds one attempt of a registry request (see attempts).
var listAttempt = 5 * time.Second

// list reads every entry through a watcher. The watcher's "initial
// values done" marker is not enough on its own: when an entry not yet
// delivered is rewritten during the listing (every host rewrites its own
// every third of the TTL), its old message is gone and its new one is
// appended after others, and the marker (which counts messages, or trusts
// the server's pending count) can come before it: the host would be
// missing from the list. So after the marker, list asks the stream for its
// last sequence and reads on until it has seen a message at least that
// recent; later values of a key replace earlier ones. A host that rewrote
// its entry twice during one listing could still be missed; hosts rewrite
// theirs every RegistryTTL/3 (10 s by default).
func (r *Registry) list(ctx context.Context) ([]*Registration, error) {
	// Delete markers are read too: the newest message may be a host
	// leaving, and waiting for a message that recent must see it.
	kv, err := r.bucket(ctx)
	if err != nil {
		return nil, err
	}
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return nil, err
	}
	defer w.Stop()
	byKey := map[string]*Registration{}
	var maxRev, until uint64
	initial := true
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				return nil, errors.New("registry: list: watcher closed")
			}
			if e == nil { // the watcher's marker
				initial = false
				st, err := kv.Status(ctx)
				if err != nil {
					return nil, err
				}
				bs, ok := st.(*jetstream.KeyValueBucketStatus)
				if !ok || maxRev >= bs.StreamInfo().State.LastSeq || bs.StreamInfo().State.Msgs == 0 {
					return sortedRegs(byKey), nil
				}
				until = bs.StreamInfo().State.LastSeq
				continue
			}
			maxRev = max(maxRev, e.Revision())
			switch {
			case e.Operation() != jetstream.KeyValuePut:
				delete(byKey, e.Key()) // the host left
			default:
				if reg := r.decode(e.Key(), e.Value()); reg != nil {
					byKey[e.Key()] = reg
				} else {
					delete(byKey, e.Key()) // a later forged value does not keep the earlier one
				}
			}
			if !initial && maxRev >= until {
				return sortedRegs(byKey), nil
			}
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func sortedRegs(byKey map[string]*Registration) []*Registration {
	out := make([]*Registration, 0, len(byKey))
	for _, reg := range byKey {
		out = append(out, reg)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Identity < out[j].Identity })
	return out
}

// RegistryLostError says the registry cannot be taken for the fleet: the
// broker lost its state (restarted without its JetStream storage) and the
// hosts are still registering again.
type RegistryLostError struct {
	// Age is how long ago the registry bucket was created; Refresh is how
	// often a responder writes its entry (a third of the bucket's TTL).
	Age, Refresh time.Duration
	// Registered counts the hosts that registered again so far.
	Registered int
}

func (e *RegistryLostError) Error() string {
	if e.Registered == 0 {
		return fmt.Sprintf("bus: the fleet registry is empty and was created %s ago: the broker's state was probably lost and hosts have not registered again yet", e.Age.Round(time.Second))
	}
	return fmt.Sprintf("bus: the fleet registry was created again %s ago under hosts that were already running: the broker's state was lost and only %d hosts have registered again so far", e.Age.Round(time.Second), e.Registered)
}

// registrySlack is how much earlier than the bucket a responder may have
// started in a fresh fleet (the first responder creates the bucket).
const registrySlack = 5 * time.Second

// Check tells a registry that holds the fleet from one the broker has just
// lost and is being refilled: when the bucket is younger than one refresh
// interval and is empty, or holds hosts that were running before it
// existed, it returns a *RegistryLostError. Callers that plan on the
// registry (deploy, workflows) must not take a half-filled registry for
// the fleet.
func (r *Registry) Check(ctx context.Context) error {
	kv, err := r.bucket(ctx)
	if err != nil {
		return err
	}
	var st jetstream.KeyValueStatus
	err = attempts(ctx, func(actx context.Context) (err error) {
		st, err = kv.Status(actx)
		return err
	})
	if err != nil {
		return fmt.Errorf("registry: status: %w", err)
	}
	bs, ok := st.(*jetstream.KeyValueBucketStatus)
	if !ok || bs.StreamInfo() == nil {
		return nil
	}
	age := time.Since(bs.StreamInfo().Created)
	refresh := st.TTL() / 3
	if refresh <= 0 || age >= refresh {
		return nil
	}
	regs, err := r.List(ctx)
	if err != nil {
		return err
	}
	created := bs.StreamInfo().Created
	lost := len(regs) == 0
	for _, reg := range regs {
		if reg.Started.Before(created.Add(-registrySlack)) {
			lost = true
		}
	}
	if lost {
		return &RegistryLostError{Age: age, Refresh: refresh, Registered: len(regs)}
	}
	return nil
}
