package bus

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// TestRegistryListWhileHostsRefresh: every host rewrites its entry every
// third of the TTL, so a large fleet's registry changes while a client
// lists it. A host whose entry is rewritten during the listing must still
// be listed: a host missing from the list is left out of an untargeted
// request without even a "no response" (a 5,000-host lab ping got 4,999
// replies this way).
func TestRegistryListWhileHostsRefresh(t *testing.T) {
	_, reg := testRegistry(t, "t", time.Minute)
	ctx := context.Background()
	const n = 500
	now := time.Now()
	hk := newSigner(t)
	put := func(i int) error {
		return reg.Put(ctx, hk, &Registration{Identity: fmt.Sprintf("web%d", i), Collective: "t", Started: now, Updated: time.Now()})
	}
	for i := range n {
		if err := put(i); err != nil {
			t.Fatal(err)
		}
	}
	// Refresh entries from both ends of the key order while listing.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				k := i % n
				if w == 1 {
					k = n - 1 - k
				}
				if err := put(k); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	defer func() { close(stop); wg.Wait() }()
	for round := range 30 {
		regs, err := reg.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(regs) != n {
			t.Fatalf("round %d: listed %d of %d hosts while they refreshed", round, len(regs), n)
		}
		seen := map[string]bool{}
		for _, r := range regs {
			if seen[r.Identity] {
				t.Fatalf("round %d: %s listed twice", round, r.Identity)
			}
			seen[r.Identity] = true
		}
	}
}
