package provision_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/signetbus/signet/bus"
	"github.com/signetbus/signet/bus/control"
	"github.com/signetbus/signet/internal/audit/ship"
	"github.com/signetbus/signet/internal/config"
)

// TestReplySubjectGap pins what nats-server's subject permissions cannot
// stop (docs/security.md, "Where the broker publishes for a user"): it
// checks the subject a user publishes on, never the reply subject of a
// request nor a push consumer's deliver subject, and JetStream answers on
// them as the account's own internal client. So an operator's broker
// account has the broker deliver what it may read onto any subject,
// whichever read it uses: a push consumer (also one created through the
// filter-pinning $JS.API.CONSUMER.CREATE.S.NAME.FILTER form), a pull
// consumer's next request, a direct get; it reaches another operator's
// inbox, a key of the control bucket only admins may write, and another
// host's audit subject. That is why operators read the buckets they write
// only by message gets (TestBucketsClientsWriteDeliverNowhere): what they
// can place elsewhere is a copy of a message a host or an admin signed,
// or the broker's JSON, never bytes of their own.
//
// When this test fails, nats-server has started to check these subjects:
// tighten PermissionsFor and the docs accordingly.
func TestReplySubjectGap(t *testing.T) {
	l := startLocked(t)
	alice, alicev := l.connect(t, "alice")
	bob, _ := l.connect(t, "bob")
	web1, _ := l.connect(t, "web1")
	root, _ := l.connect(t, "root")
	bobInbox := config.InboxPrefix(l.users["bob"].NKey)
	got := make(chan *nats.Msg, 64)
	if _, err := bob.Subscribe(bobInbox+".>", func(m *nats.Msg) { got <- m }); err != nil {
		t.Fatal(err)
	}
	bob.Flush()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	// web1's registry entry, which alice may read.
	registry := bus.RegistryBucket(collective)
	if _, err := kv(t, web1, registry).Put(ctx, "web1", []byte("web1's entry")); err != nil {
		t.Fatal(err)
	}
	stream := "KV_" + registry
	entry := "$KV." + registry + ".web1"
	delivered := func(t *testing.T, subject string) {
		t.Helper()
		for {
			select {
			case m := <-got:
				// A consumer delivers with the stream subject on the wire,
				// routed by the deliver subject to bob's subscription.
				if string(m.Data) == "web1's entry" && (m.Subject == subject || m.Subject == entry) {
					t.Logf("bob received web1's entry (%s, on %s)", subject, m.Subject)
					return
				}
			case err := <-alicev:
				t.Fatalf("the broker refused alice: %v (nats-server checks it now: update PermissionsFor and docs/security.md)", err)
			case <-time.After(5 * time.Second):
				t.Fatalf("nothing delivered on %s (nats-server checks it now: update PermissionsFor and docs/security.md)", subject)
			}
		}
	}
	request := func(subject, reply string, body any) {
		b, _ := json.Marshal(body)
		if err := alice.PublishMsg(&nats.Msg{Subject: subject, Reply: reply, Data: b}); err != nil {
			t.Fatal(err)
		}
		alice.Flush()
	}
	js, _ := jetstream.New(alice)
	st, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("push consumer through the filter-pinning create", func(t *testing.T) {
		// With a filter, nats.go creates it on
		// $JS.API.CONSUMER.CREATE.STREAM.NAME.FILTER; the server checks
		// the filter against the subject, not the deliver subject.
		to := bobInbox + ".push"
		// A push consumer delivers only while the deliver subject has
		// interest as such (a literal subscription, like a host's
		// t.node.ID), not through bob's wildcard inbox subscription.
		if _, err := bob.Subscribe(to, func(m *nats.Msg) { got <- m }); err != nil {
			t.Fatal(err)
		}
		bob.Flush()
		if _, err := st.CreateOrUpdatePushConsumer(ctx, jetstream.ConsumerConfig{Name: "c1", DeliverSubject: to,
			AckPolicy: jetstream.AckNonePolicy, FilterSubject: entry}); err != nil {
			t.Fatal(err)
		}
		delivered(t, to)
	})
	t.Run("pull consumer next with a reply subject", func(t *testing.T) {
		if _, err := st.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Name: "c2", AckPolicy: jetstream.AckNonePolicy, FilterSubject: entry}); err != nil {
			t.Fatal(err)
		}
		to := bobInbox + ".pull"
		request("$JS.API.CONSUMER.MSG.NEXT."+stream+".c2", to, map[string]any{"batch": 1})
		delivered(t, to)
	})
	t.Run("direct get", func(t *testing.T) {
		to := bobInbox + ".direct"
		request("$JS.API.DIRECT.GET."+stream, to, map[string]any{"last_by_subj": entry})
		delivered(t, to)
	})
	t.Run("into the control bucket and another host's audit", func(t *testing.T) {
		locks := "$KV." + control.Bucket(collective) + "." + control.KindLocks
		audit := ship.Subject(collective, "web2.example.com")
		for _, to := range []string{locks, audit} {
			request("$JS.API.DIRECT.GET."+stream, to, map[string]any{"last_by_subj": entry})
		}
		time.Sleep(200 * time.Millisecond)
		e, err := kv(t, root, control.Bucket(collective)).Get(ctx, control.KindLocks)
		if err != nil || string(e.Value()) != "web1's entry" {
			t.Fatalf("locks key after the direct get: %v %v (nats-server checks it now: update docs/security.md)", e, err)
		}
		rjs, _ := jetstream.New(root)
		ast, err := rjs.Stream(ctx, ship.Stream(collective))
		if err != nil {
			t.Fatal(err)
		}
		m, err := ast.GetLastMsgForSubject(ctx, audit)
		if err != nil || string(m.Data) != "web1's entry" {
			t.Fatalf("web2's audit subject after the direct get: %v (nats-server checks it now: update docs/security.md)", err)
		}
		// What the hosts and admins make of it: the locks document does
		// not verify (hosts keep their current set; `signet lock` builds
		// on the newest one in the history that does).
		if _, err := control.Open(e.Value()); err == nil || !strings.Contains(err.Error(), "control") {
			t.Fatalf("the injected locks document opened: %v", err)
		}
	})
	alicev.quiet(t)
}
