package bus

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

// TestAttemptsStopOnNoRegistry: a lazy registry whose opening timed out
// answers every later use at once with ErrNoRegistry wrapping that
// timeout. attempts retried such an answer without pause for as long as
// the caller's context allowed: `signet ping` (a context without a
// deadline) spun for ever while a locked-down cluster formed (3,184,782
// attempts in one test/cluster run). It is final now: one attempt, and
// the caller falls back to broadcast discovery.
func TestAttemptsStopOnNoRegistry(t *testing.T) {
	calls := 0
	cached := fmt.Errorf("%w: %w", ErrNoRegistry, context.DeadlineExceeded)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	err := attempts(ctx, func(context.Context) error {
		calls++
		if calls > 100 {
			cancel() // the old loop: stop it so that the test ends
		}
		return cached
	})
	if calls != 1 || !errors.Is(err, ErrNoRegistry) {
		t.Fatalf("want one attempt ending in ErrNoRegistry, found %d attempts: %v", calls, err)
	}
}
