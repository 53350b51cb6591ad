package bus

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// ResultNotRegistered is a host that a direct request named but that the
// fleet registry does not know: its signetd is not running, or never
// connected to this broker. The request is not sent to it and the client
// does not wait for it; it counts as a failure.
const ResultNotRegistered ResultStatus = "not registered"

// ErrNotRegistered is returned by Registry.Get for a host without an entry.
var ErrNotRegistered = errors.New("bus: host not in the fleet registry")

// registryLookup bounds one registry read of the unknown-host check: a
// broker that does not answer at once must not delay the request.
const registryLookup = 2 * time.Second

// lookupMany is the most targets the check looks up, one registry read
// each; a request naming more is sent without it (a large fan-out must not
// pay a read per host, nor a listing of the whole registry).
const lookupMany = 64

// Get returns identity's registration, or ErrNotRegistered. The entry is
// decoded as List decodes it: signed by the host (verified against
// known_hosts when the registry has them, see Verify), so an entry
// that does not verify counts as none. The reboot step reads boot ids
// through it: the broker cannot fake a host's return.
func (r *Registry) Get(ctx context.Context, identity string) (*Registration, error) {
	value, err := r.get(ctx, identity)
	if err != nil {
		return nil, err
	}
	reg := r.decode(identity, value)
	if reg == nil {
		return nil, fmt.Errorf("%w (its entry does not verify or is malformed)", ErrNotRegistered)
	}
	return reg, nil
}

// get reads identity's entry: with a direct get while a lazy registry has
// not opened its bucket (a request to named hosts reads their entries and
// nothing else), through the opened bucket otherwise.
func (r *Registry) get(ctx context.Context, identity string) ([]byte, error) {
	if !r.opened() {
		v, err := r.directGet(ctx, identity)
		if !errors.Is(err, errNoDirectGet) {
			return v, err
		}
	}
	kv, err := r.bucket(ctx)
	if err != nil {
		return nil, err
	}
	e, err := kv.Get(ctx, identity)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, ErrNotRegistered
	}
	if err != nil {
		return nil, fmt.Errorf("registry: get %s: %w", identity, err)
	}
	return e.Value(), nil
}

// notRegisteredError says why a named host was not sent a request.
func notRegisteredError(id string) string {
	return id + " is not in the fleet registry: its signetd is not running or has not connected to this broker; the request was not sent to it (check the name, then `signet ping`)"
}

// unregistered returns the targets the registry does not know, when it
// can be trusted to know the fleet. Without a registry, when it cannot be
// read, or while it is being refilled after the broker lost its state
// (Registry.Check), it returns none: the request then goes to every named
// host and a host that is not there is reported as "no response" at the
// timeout, as before.
func (c *Client) unregistered(ctx context.Context, targets []string) []string {
	reg := c.cfg.Registry
	if reg == nil || len(targets) == 0 || len(targets) > lookupMany {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, registryLookup)
	defer cancel()
	// One read per target, all in flight together: one round trip for
	// the check, not one per host.
	errs := make([]error, len(targets))
	var wg sync.WaitGroup
	for i, t := range targets {
		wg.Go(func() { _, errs[i] = reg.Get(ctx, t) })
	}
	wg.Wait()
	var missing []string
	for i, err := range errs {
		switch {
		case errors.Is(err, ErrNotRegistered):
			missing = append(missing, targets[i])
		case err != nil:
			c.log.Debug("unknown-host check skipped: registry not readable", "err", err)
			return nil
		}
	}
	if len(missing) == 0 {
		return nil
	}
	// Only a registry that holds the fleet may refuse a host.
	if err := reg.Check(ctx); err != nil {
		c.log.Debug("unknown-host check skipped: registry not trusted", "err", err)
		return nil
	}
	return missing
}
