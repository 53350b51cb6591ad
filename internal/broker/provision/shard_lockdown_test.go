package provision_test

import (
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/signetbus/signet/bus"
	"github.com/signetbus/signet/internal/shard"
)

// A responder may listen on its own shard subjects (where a client
// publishes a chunk of a large request once per shard) and on no other
// shard's; a client may publish on them.
func TestLockdownShardSubjects(t *testing.T) {
	l := startLocked(t)
	web1, web1v := l.connect(t, "web1")
	alice, alicev := l.connect(t, "alice")
	for _, size := range shard.Sizes {
		if _, err := web1.Subscribe(bus.ShardSubject(collective, size, "web1"), func(*nats.Msg) {}); err != nil {
			t.Fatal(err)
		}
	}
	if err := web1.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := alice.Publish(bus.ShardSubject(collective, 256, "web1"), []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := alice.Flush(); err != nil {
		t.Fatal(err)
	}
	web1v.quiet(t)
	alicev.quiet(t)
	other := shard.SubjectOf(collective, 4096, (shard.Of("web1", 4096)+1)%4096)
	web1.Subscribe(other, func(*nats.Msg) {})
	web1.Flush()
	web1v.refused(t, `Subscription to "`+other+`"`)
}
