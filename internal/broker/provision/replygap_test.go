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
	"github.com/signetbus/signet/internal/broker"
	"github.com/signetbus/signet/internal/config"
)

// TestReplySubjectGap pins what nats-server's subject permissions cannot
// stop (docs/security.md, "Where the server publishes for a user"): it
// checks the subject a user publishes on, never the reply subject of a
// request nor a push consumer's deliver subject, and JetStream answers on
// them as the account's own internal client. So an operator's broker
// account that may read any bucket it writes has the broker deliver the
// bytes it wrote onto any subject, whichever read it uses: a push
// consumer (also one created through the filter-pinning
// $JS.API.CONSUMER.CREATE.S.NAME.FILTER form), a pull consumer's next
// request, or a direct get. It reaches another operator's inbox, a key
// of the control bucket only admins may write, and another host's audit
// subject. Every one of those is signed or chained, and the readers drop
// what does not verify (the tests named in docs/security.md).
//
// When this test fails, nats-server has started to check these subjects:
// tighten PermissionsFor and the docs accordingly.
func TestReplySubjectGap(t *testing.T) {
	l := startLocked(t)
	alice, alicev := l.connect(t, "alice")
	bob, _ := l.connect(t, "bob")
	root, _ := l.connect(t, "root")
	bobInbox := config.InboxPrefix(l.users["bob"].NKey)
	got := make(chan *nats.Msg, 64)
	if _, err := bob.Subscribe(bobInbox+".>", func(m *nats.Msg) { got <- m }); err != nil {
		t.Fatal(err)
	}
	bob.Flush()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	// alice writes bytes of her choosing into the approvals bucket, and
	// into a workflow bucket she may not consume at all.
	approvals := "KV_" + bus.ApprovalBucket(collective)
	for _, k := range []string{"request.x", "request.y"} {
		if _, err := kv(t, alice, bus.ApprovalBucket(collective)).Put(ctx, k, []byte("forged "+k)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := kv(t, alice, broker.RunsBucket).Put(ctx, "x", []byte("forged")); err != nil {
		t.Fatal(err)
	}
	delivered := func(t *testing.T, subject, data string) {
		t.Helper()
		for {
			select {
			case m := <-got:
				// A consumer delivers with the stream subject on the wire,
				// routed by the deliver subject to bob's subscription.
				if string(m.Data) == data && (m.Subject == subject || strings.HasPrefix(m.Subject, "$KV.")) {
					t.Logf("bob received alice's bytes (%s, on %s)", subject, m.Subject)
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

	t.Run("push consumer through the filter-pinning create", func(t *testing.T) {
		// With a filter, nats.go creates it on
		// $JS.API.CONSUMER.CREATE.STREAM.NAME.FILTER, and the server
		// checks the filter against the subject, not the deliver subject.
		to := bobInbox + ".push"
		// A push consumer delivers only while the deliver subject has
		// interest as such (a literal subscription, like a host's
		// t.node.ID), not through bob's wildcard inbox subscription.
		if _, err := bob.Subscribe(to, func(m *nats.Msg) { got <- m }); err != nil {
			t.Fatal(err)
		}
		bob.Flush()
		js, _ := jetstream.New(alice)
		st, err := js.Stream(ctx, approvals)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.CreateOrUpdatePushConsumer(ctx, jetstream.ConsumerConfig{Name: "c1", DeliverSubject: to,
			AckPolicy: jetstream.AckNonePolicy, FilterSubject: "$KV." + bus.ApprovalBucket(collective) + ".request.x"}); err != nil {
			t.Fatal(err)
		}
		delivered(t, to, "forged request.x")
	})
	t.Run("pull consumer next with a reply subject", func(t *testing.T) {
		js, _ := jetstream.New(alice)
		st, err := js.Stream(ctx, approvals)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Name: "c2", AckPolicy: jetstream.AckNonePolicy,
			FilterSubject: "$KV." + bus.ApprovalBucket(collective) + ".request.y"}); err != nil {
			t.Fatal(err)
		}
		to := bobInbox + ".pull"
		request("$JS.API.CONSUMER.MSG.NEXT."+approvals+".c2", to, map[string]any{"batch": 1})
		delivered(t, to, "forged request.y")
	})
	t.Run("direct get of a bucket without consumers", func(t *testing.T) {
		to := bobInbox + ".direct"
		request("$JS.API.DIRECT.GET.KV_"+broker.RunsBucket, to, map[string]any{"last_by_subj": "$KV." + broker.RunsBucket + ".x"})
		delivered(t, to, "forged")
	})
	t.Run("into the control bucket and another host's audit", func(t *testing.T) {
		locks := "$KV." + control.Bucket(collective) + "." + control.KindLocks
		audit := ship.Subject(collective, "web2.example.com")
		for _, to := range []string{locks, audit} {
			request("$JS.API.DIRECT.GET.KV_"+broker.RunsBucket, to, map[string]any{"last_by_subj": "$KV." + broker.RunsBucket + ".x"})
		}
		time.Sleep(200 * time.Millisecond)
		e, err := kv(t, root, control.Bucket(collective)).Get(ctx, control.KindLocks)
		if err != nil || string(e.Value()) != "forged" {
			t.Fatalf("locks key after the direct get: %v %v (nats-server checks it now: update docs/security.md)", e, err)
		}
		js, _ := jetstream.New(root)
		st, err := js.Stream(ctx, ship.Stream(collective))
		if err != nil {
			t.Fatal(err)
		}
		m, err := st.GetLastMsgForSubject(ctx, audit)
		if err != nil || string(m.Data) != "forged" {
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
