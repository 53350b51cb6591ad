package workflows

import (
	"context"
	"testing"
	"time"
)

// BenchmarkLockRenew measures the compare-and-set renewal the engine does
// before every step, against a real embedded broker.
func BenchmarkLockRenew(b *testing.B) {
	srv := startBrokerB(b)
	s, _ := kvStoreOnB(b, srv, KVConfig{LockTTL: time.Minute})
	ctx := context.Background()
	h, err := s.Lock(ctx, "app/prod", Lease{Kind: "deploy", Holder: "alice", Run: "1111"})
	if err != nil {
		b.Fatal(err)
	}
	defer h.Unlock(ctx)
	b.ResetTimer()
	for range b.N {
		if err := h.Renew(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSignedSave measures a state save: sign and put.
func BenchmarkSignedSave(b *testing.B) {
	srv := startBrokerB(b)
	s, _ := kvStoreOnB(b, srv, KVConfig{LockTTL: time.Minute})
	ctx := context.Background()
	st := deployState()
	b.ResetTimer()
	for range b.N {
		if err := s.Save(ctx, st); err != nil {
			b.Fatal(err)
		}
	}
}
