package workflows

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/signetbus/signet/internal/broker/brokertest"
)

// stores runs the suite against the in-memory store and against the
// JetStream KV store on a real embedded nats-server.
func stores(t *testing.T) map[string]func(t *testing.T) Store {
	return map[string]func(t *testing.T) Store{
		"mem": func(t *testing.T) Store { return NewMemStore() },
		"jetstream": func(t *testing.T) Store {
			s, _ := kvStore(t, 2*time.Second)
			return s
		},
	}
}

func kvStore(t *testing.T, ttl time.Duration) (*KVStore, jetstream.JetStream) {
	t.Helper()
	srv := brokertest.Start(t)
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewKVStore(context.Background(), js, KVConfig{LockTTL: ttl, Signer: testSigner(t)})
	if err != nil {
		t.Fatal(err)
	}
	return s, js
}

func TestStore(t *testing.T) {
	for name, open := range stores(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			t.Run("save and load round trip", func(t *testing.T) {
				s := open(t)
				st := NewRunState("deploy", [][]string{{"web1", "web2"}, {"web3"}}, map[string]string{"version": "1.4.2"})
				st.App, st.Env, st.Version, st.User = "middleware", "prod", "1.4.2", "alice@bastion"
				st.Hosts["web1"].Done = []string{"maintenance_start", "drain"}
				st.Hosts["web1"].SetMark("drained")
				st.Hosts["web1"].Vars = map[string]string{"previous": "1.4.1"}
				st.Started = st.Started.Truncate(time.Second)
				if err := s.Save(ctx, st); err != nil {
					t.Fatal(err)
				}
				got, err := s.Load(ctx, st.ID)
				if err != nil {
					t.Fatal(err)
				}
				got.Updated, st.Updated = time.Time{}, time.Time{}
				if !reflect.DeepEqual(got, st) {
					t.Errorf("loaded %+v, want %+v", got, st)
				}
				st.Status = StatusFailed
				if err := s.Save(ctx, st); err != nil {
					t.Fatal(err)
				}
				if got, _ := s.Load(ctx, st.ID); got.Status != StatusFailed {
					t.Errorf("status after second save = %q, want failed", got.Status)
				}
			})
			t.Run("unknown run", func(t *testing.T) {
				_, err := open(t).Load(ctx, "deadbeef")
				if !errors.Is(err, ErrNotFound) {
					t.Errorf("Load(unknown) error = %v, want ErrNotFound", err)
				}
			})
			t.Run("lock names its holder", func(t *testing.T) {
				s := open(t)
				since := time.Date(2024, 6, 1, 12, 1, 7, 0, time.Local)
				unlock, err := s.Lock(ctx, "middleware/prod", Lease{Kind: "deploy", Holder: "alice@bastion", Run: "7f3a", Since: since})
				if err != nil {
					t.Fatal(err)
				}
				_, err = s.Lock(ctx, "middleware/prod", Lease{Kind: "deploy", Holder: "bob@laptop", Run: "9c2e", Since: time.Now()})
				var le *LockError
				if !errors.As(err, &le) {
					t.Fatalf("second Lock error = %v, want a LockError", err)
				}
				if want := "deploy of middleware/prod is locked by alice@bastion run 7f3a (since 12:01:07)"; err.Error() != want {
					t.Errorf("error = %q, want %q", err, want)
				}
				other, err := s.Lock(ctx, "middleware/dev", Lease{Kind: "deploy", Holder: "bob@laptop", Run: "9c2e"})
				if err != nil {
					t.Fatalf("another env must not be locked: %v", err)
				}
				other.Unlock(ctx)
				if err := unlock.Unlock(ctx); err != nil {
					t.Fatal(err)
				}
				again, err := s.Lock(ctx, "middleware/prod", Lease{Kind: "deploy", Holder: "bob@laptop", Run: "9c2e"})
				if err != nil {
					t.Fatalf("Lock after unlock: %v", err)
				}
				again.Unlock(ctx)
			})
		})
	}
}

// TestKVLockLease proves the JetStream lock outlives its TTL while the
// holder refreshes it, and that a crashed holder's lock expires.
func TestKVLockLease(t *testing.T) {
	ctx := context.Background()
	s, _ := kvStore(t, time.Second)
	unlock, err := s.Lock(ctx, "app/prod", Lease{Kind: "deploy", Holder: "alice@bastion", Run: "1111"})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	if _, err := s.Lock(ctx, "app/prod", Lease{Kind: "deploy", Holder: "bob", Run: "2222"}); err == nil {
		t.Fatal("lock was free after 3 TTLs although the holder refreshed it")
	}
	unlock.Unlock(ctx)

	// A crashed holder: the entry is written once and never refreshed.
	if _, err := s.locks.Create(ctx, "app.dev", []byte(`{"kind":"deploy","holder":"ghost","run":"3333"}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Lock(ctx, "app/dev", Lease{Kind: "deploy", Holder: "bob", Run: "2222"}); err == nil {
		t.Fatal("fresh lock of a crashed holder was not held")
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		u, err := s.Lock(ctx, "app/dev", Lease{Kind: "deploy", Holder: "bob", Run: "2222"})
		if err == nil {
			u.Unlock(ctx)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("crashed holder's lock never expired: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestKVStoreRejectsBadNames(t *testing.T) {
	s, _ := kvStore(t, time.Second)
	ctx := context.Background()
	for _, name := range []string{"", "App/prod", "app/prod/x;", "../x/y", "-app/prod", "app/"} {
		if _, err := s.Lock(ctx, name, Lease{}); err == nil {
			t.Errorf("Lock(%q) accepted", name)
		}
	}
	if err := s.Save(ctx, &RunState{ID: "../../x"}); err == nil {
		t.Error("Save accepted run id ../../x")
	}
	if _, err := s.Load(ctx, "a.b"); err == nil {
		t.Error("Load accepted run id a.b")
	}
}
