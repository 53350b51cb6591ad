package buscaller

import (
	"context"
	"errors"
	"time"

	"github.com/signetbus/signet/bus"
	"github.com/signetbus/signet/workflows"
)

var _ workflows.BootWatcher = (*Caller)(nil)

// bootPoll is how often WaitBoot reads the host's registry entry.
var bootPoll = 500 * time.Millisecond

// BootID returns host's boot id from the registry; "" when it is not
// registered or published none.
func (b *Caller) BootID(ctx context.Context, host string) (string, error) {
	if b.Registry == nil {
		return "", errors.New("no fleet registry on this broker")
	}
	reg, err := b.Registry.Get(ctx, host)
	if errors.Is(err, bus.ErrNotRegistered) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return reg.BootID, nil
}

// WaitBoot reads host's registry entry until it holds a boot id other
// than old. A registry that cannot be read for a while (the broker
// restarting) is read again until ctx ends.
func (b *Caller) WaitBoot(ctx context.Context, host, old string) (string, error) {
	t := time.NewTicker(bootPoll)
	defer t.Stop()
	for {
		if id, err := b.BootID(ctx, host); err == nil && id != "" && id != old {
			return id, nil
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-t.C:
		}
	}
}
