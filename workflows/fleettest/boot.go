package fleettest

import (
	"context"
	"time"

	"github.com/signetbus/signet/workflows"
)

var _ workflows.BootWatcher = (*Fleet)(nil)

// BootID implements workflows.BootWatcher: the node's BootID ("" for an
// unknown host).
func (f *Fleet) BootID(ctx context.Context, host string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if n := f.Nodes[host]; n != nil {
		return n.BootID, nil
	}
	return "", nil
}

// WaitBoot implements workflows.BootWatcher by polling the node.
func (f *Fleet) WaitBoot(ctx context.Context, host, old string) (string, error) {
	for {
		if id, _ := f.BootID(ctx, host); id != "" && id != old {
			return id, nil
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}
