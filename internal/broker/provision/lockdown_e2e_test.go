package provision_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/crypto/ssh"

	"github.com/signetbus/signet/bus"
	"github.com/signetbus/signet/bus/control"
	"github.com/signetbus/signet/internal/audit/ship"
	"github.com/signetbus/signet/internal/keys/keytest"
	"github.com/signetbus/signet/internal/replicas"
	"github.com/signetbus/signet/workflows"
)

type trustOne struct{ p *bus.Principal }

func (t trustOne) LookupKey(b []byte) (*bus.Principal, bool) {
	return t.p, string(b) == string(t.p.Key.Marshal())
}

type known map[string]ssh.PublicKey

func (k known) Lookup(id string) (ssh.PublicKey, bool) { p, ok := k[id]; return p, ok }

type noAudit struct{}

func (noAudit) Audit(*bus.AuditRecord) error { return nil }

// TestLockedBrokerServes: everything a host and an operator do in a normal
// run works under the locked-down permissions without one violation: the
// host registers (signed) and watches the controls and ships audit
// lines; the operator finds it in the registry, pings it and runs an
// action, and reads the audit stream.
func TestLockedBrokerServes(t *testing.T) {
	t.Run("signet broker", func(t *testing.T) { lockedServes(t, startLockedWith(t, false)) })
	t.Run("existing nats-server, provisioned by an admin", func(t *testing.T) { lockedServes(t, startLockedWith(t, true)) })
}

func lockedServes(t *testing.T, l *locked) {
	web1, web1v := l.connect(t, "web1")
	alice, alicev := l.connect(t, "alice")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	hostKey, op := keytest.Signer(t), keytest.Signer(t)
	node := &bus.Node{Identity: "web1", Facts: map[string]string{"env": "lab"}, Agents: []string{"rpcutil", "test"}}
	r, err := bus.NewResponder(bus.ResponderConfig{Conn: web1, Collective: collective, HostKey: hostKey,
		Node: func() *bus.Node { return node }, Audit: noAudit{},
		Trust: trustOne{&bus.Principal{Name: "alice", Roles: []string{"admin"}, Key: op.PublicKey(), Fingerprint: ssh.FingerprintSHA256(op.PublicKey())}},
		Handler: bus.HandlerFunc(func(_ context.Context, c *bus.Call) *bus.Reply {
			return &bus.Reply{Status: bus.StatusOK, Summary: c.Request.Agent + "." + c.Request.Action}
		})})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	defer r.Shutdown(context.Background())

	// The host's side: register, watch the controls, ship an audit line.
	reg, err := bus.CreateRegistry(ctx, web1, collective, time.Minute, replicas.Auto)
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.Put(ctx, hostKey, &bus.Registration{Identity: "web1", Collective: collective, Facts: node.Facts, Agents: node.Agents}); err != nil {
		t.Fatal(err)
	}
	hjs, _ := jetstream.New(web1)
	ctl, err := hjs.KeyValue(ctx, control.Bucket(collective))
	if err != nil {
		t.Fatal(err)
	}
	w, err := ctl.WatchAll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	if e := <-w.Updates(); e != nil {
		t.Fatalf("empty control bucket sent %v", e.Key())
	}
	if _, err := ship.EnsureStream(ctx, hjs, collective, replicas.Auto); err != nil {
		t.Fatal(err)
	}
	if _, err := hjs.Publish(ctx, ship.Subject(collective, "web1"), []byte(`{"seq":1}`)); err != nil {
		t.Fatalf("ship an audit line: %v", err)
	}

	// The operator's side.
	oreg, err := bus.OpenRegistry(ctx, alice, collective)
	if err != nil {
		t.Fatal(err)
	}
	c, err := bus.NewClient(bus.ClientConfig{Conn: alice, Collective: collective, Signer: op, User: "alice",
		HostKeys: known{"web1": hostKey.PublicKey()}, Registry: oreg})
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []bus.Query{
		{Agent: "rpcutil", Action: "ping", Timeout: 5 * time.Second},                         // discovered in the registry
		{Agent: "test", Action: "echo", Targets: []string{"web1"}, Timeout: 5 * time.Second}, // direct
	} {
		out, err := c.Do(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		if len(out.Results) != 1 || out.Results[0].Status != bus.ResultOK || out.Expected != 1 {
			t.Fatalf("%s.%s: %+v", q.Agent, q.Action, out.Results)
		}
	}
	ojs, _ := jetstream.New(alice)
	lines, err := ship.Read(ctx, ojs, collective, ship.Query{})
	if err != nil || len(lines) != 1 {
		t.Fatalf("read the audit stream: %d lines, %v", len(lines), err)
	}
	// A deploy's lock and run state (workflows' buckets).
	store, err := workflows.NewKVStore(ctx, ojs, workflows.KVConfig{Signer: op})
	if err != nil {
		t.Fatal(err)
	}
	held, err := store.Lock(ctx, "web", workflows.Lease{Kind: "deploy", Holder: "alice", Run: "r1", Since: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if err := held.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	web1v.quiet(t)
	alicev.quiet(t)
}
