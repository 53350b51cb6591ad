package bus

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/signetbus/signet/internal/broker/brokertest"
)

// TestRegistryCheck: after a broker lost its storage, the registry is
// refilled by hosts that were already running. A client must not take the
// few that registered again for the fleet (a deploy once planned 2 hosts
// of 6). A fresh fleet, whose hosts started with the bucket, is fine.
func TestRegistryCheck(t *testing.T) {
	nc, reg := testRegistry(t, "t", 90*time.Second)
	ctx := context.Background()
	var lost *RegistryLostError
	if err := reg.Check(ctx); !errors.As(err, &lost) || lost.Registered != 0 {
		t.Fatalf("young empty registry: %v, want a RegistryLostError with no host", err)
	}
	now := time.Now()
	if err := reg.Put(ctx, newSigner(t), &Registration{Identity: "web1", Collective: "t", Started: now, Updated: now}); err != nil {
		t.Fatal(err)
	}
	if err := reg.Check(ctx); err != nil {
		t.Fatalf("fresh fleet: %v, want nil", err)
	}
	if err := reg.Put(ctx, newSigner(t), &Registration{Identity: "web2", Collective: "t", Started: now.Add(-time.Hour), Updated: now}); err != nil {
		t.Fatal(err)
	}
	err := reg.Check(ctx)
	if !errors.As(err, &lost) || lost.Registered != 2 {
		t.Fatalf("registry refilled by old hosts: %v, want a RegistryLostError with 2 hosts", err)
	}
	t.Log(err)

	// Once a refresh interval has passed every live host has written its
	// entry: a short TTL makes the registry old enough at once.
	old, err := CreateRegistry(ctx, nc, "u", 3*time.Second, 0)
	if err != nil {
		t.Fatal(err)
	}
	old.Put(ctx, newSigner(t), &Registration{Identity: "web1", Collective: "u", Started: now.Add(-time.Hour), Updated: now})
	deadline := time.Now().Add(10 * time.Second)
	for old.Check(ctx) != nil {
		if time.Now().After(deadline) {
			t.Fatalf("registry older than its refresh interval still refused: %v", old.Check(ctx))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// testRegistry starts a broker and creates a registry for collective on it.
func testRegistry(t *testing.T, collective string, ttl time.Duration) (*nats.Conn, *Registry) {
	t.Helper()
	srv := brokertest.Start(t)
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	reg, err := CreateRegistry(context.Background(), nc, collective, ttl, 0)
	if err != nil {
		t.Fatal(err)
	}
	return nc, reg
}
