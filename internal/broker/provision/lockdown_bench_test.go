package provision_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"golang.org/x/crypto/ssh"

	"github.com/signetbus/signet/bus"
	"github.com/signetbus/signet/internal/broker/brokertest"
	"github.com/signetbus/signet/internal/keys/keytest"
)

// BenchmarkPing compares one signed, targeted ping round trip on an open
// broker (plaintext, no users) with the same on a locked-down one (TLS,
// nkey users, subject permissions), in the same run.
func BenchmarkPing(b *testing.B) {
	b.Run("open", func(b *testing.B) {
		s := brokertest.Start(b)
		conn := func() *nats.Conn {
			nc, err := nats.Connect(s.ClientURL())
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(nc.Close)
			return nc
		}
		benchPing(b, conn(), conn())
	})
	b.Run("locked", func(b *testing.B) {
		l := startLocked(b)
		web1, _ := l.connect(b, "web1")
		alice, _ := l.connect(b, "alice")
		benchPing(b, web1, alice)
	})
}

func benchPing(b *testing.B, host, client *nats.Conn) {
	hostKey, op := keytest.Signer(b), keytest.Signer(b)
	node := &bus.Node{Identity: "web1", Agents: []string{"rpcutil"}}
	r, err := bus.NewResponder(bus.ResponderConfig{Conn: host, Collective: collective, HostKey: hostKey,
		Node: func() *bus.Node { return node }, Audit: noAudit{}, ReplayCacheSize: 1 << 20,
		Trust:   trustOne{&bus.Principal{Name: "alice", Roles: []string{"admin"}, Key: op.PublicKey(), Fingerprint: ssh.FingerprintSHA256(op.PublicKey())}},
		Handler: bus.HandlerFunc(func(context.Context, *bus.Call) *bus.Reply { return &bus.Reply{Status: bus.StatusOK} })})
	if err != nil {
		b.Fatal(err)
	}
	if err := r.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { r.Shutdown(context.Background()) })
	c, err := bus.NewClient(bus.ClientConfig{Conn: client, Collective: collective, Signer: op, User: "alice", HostKeys: known{"web1": hostKey.PublicKey()}})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	for b.Loop() {
		out, err := c.Do(ctx, bus.Query{Agent: "rpcutil", Action: "ping", Targets: []string{"web1"}, Timeout: 5 * time.Second})
		if err != nil || out.Results[0].Status != bus.ResultOK {
			b.Fatalf("%v %+v", err, out)
		}
	}
}
