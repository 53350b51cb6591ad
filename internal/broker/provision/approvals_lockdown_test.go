package provision_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/crypto/ssh"

	"github.com/signetbus/signet/bus"
	"github.com/signetbus/signet/internal/broker"
	"github.com/signetbus/signet/internal/config"
	"github.com/signetbus/signet/internal/keys/keytest"
)

// TestBucketsClientsWriteDeliverNowhere: an operator's broker account may
// write the approvals and workflow buckets, so no read of them may let
// the broker publish their raw bytes on a subject the account chooses
// (docs/security.md, "Where the broker publishes for a user"): no
// consumer of them (push or pull), no direct get; a message get answers
// in the broker's JSON, whatever reply subject it names. The two-person
// rule still works over these permissions: alice submits, bob lists and
// approves, alice's wait sees it.
func TestBucketsClientsWriteDeliverNowhere(t *testing.T) {
	l := startLocked(t)
	alice, alicev := l.connect(t, "alice")
	bob, bobv := l.connect(t, "bob")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	bobInbox := config.InboxPrefix(l.users["bob"].NKey)
	got := make(chan *nats.Msg, 16)
	if _, err := bob.Subscribe(bobInbox+".>", func(m *nats.Msg) { got <- m }); err != nil {
		t.Fatal(err)
	}
	bob.Flush()

	approvals := bus.ApprovalBucket(collective)
	for _, b := range []string{approvals, broker.RunsBucket, broker.LocksBucket, broker.ReleasesBucket} {
		t.Run(b, func(t *testing.T) {
			if _, err := kv(t, alice, b).Put(ctx, "request.x", []byte("forged")); err != nil {
				t.Fatal(err)
			}
			stream := "KV_" + b
			js, _ := jetstream.New(alice)
			st, err := js.Stream(ctx, stream)
			if err != nil {
				t.Fatal(err)
			}
			if st.CachedInfo().Config.AllowDirect {
				t.Errorf("%s allows direct gets: their reply subject is where the raw message goes", stream)
			}
			short, c := context.WithTimeout(ctx, 500*time.Millisecond)
			st.CreateOrUpdatePushConsumer(short, jetstream.ConsumerConfig{DeliverSubject: bobInbox + ".push", AckPolicy: jetstream.AckNonePolicy,
				FilterSubject: "$KV." + b + ".request.x"})
			c()
			alicev.refused(t, `Publish to "$JS.API.CONSUMER.CREATE.`+stream)
			short, c = context.WithTimeout(ctx, 500*time.Millisecond)
			st.CreateOrUpdateConsumer(short, jetstream.ConsumerConfig{AckPolicy: jetstream.AckNonePolicy})
			c()
			alicev.refused(t, `Publish to "$JS.API.CONSUMER.CREATE.`+stream)
			alice.PublishMsg(&nats.Msg{Subject: "$JS.API.DIRECT.GET." + stream, Reply: bobInbox + ".direct",
				Data: []byte(`{"last_by_subj":"$KV.` + b + `.request.x"}`)})
			alice.Flush()
			alicev.refused(t, `Publish to "$JS.API.DIRECT.GET.`+stream)
			// A message get still answers where alice says, in JSON.
			alice.PublishMsg(&nats.Msg{Subject: "$JS.API.STREAM.MSG.GET." + stream, Reply: bobInbox + ".get",
				Data: []byte(`{"last_by_subj":"$KV.` + b + `.request.x"}`)})
			alice.Flush()
			select {
			case m := <-got:
				var resp struct {
					Type string `json:"type"`
				}
				if string(m.Data) == "forged" || json.Unmarshal(m.Data, &resp) != nil || resp.Type != "io.nats.jetstream.api.v1.stream_msg_get_response" {
					t.Fatalf("bob received %q on %s, want only the broker's JSON answer", m.Data, m.Subject)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("no answer to the message get")
			}
		})
	}

	t.Run("the two-person rule over these permissions", func(t *testing.T) {
		as, err := bus.OpenApprovalStore(ctx, alice, collective)
		if err != nil {
			t.Fatal(err)
		}
		bs, err := bus.OpenApprovalStore(ctx, bob, collective)
		if err != nil {
			t.Fatal(err)
		}
		req, appr := keytest.Signer(t), keytest.Signer(t)
		now := time.Now()
		sub := bus.ApprovalSubject{Kind: bus.SubjectRequest, Collective: collective, Requester: ssh.FingerprintSHA256(req.PublicKey()),
			RequesterName: "alice", Reason: "CHG-1", Expires: now.Add(time.Hour).UnixMilli(), Agent: "rpcutil", Action: "ping", Targets: []string{"web1"}}
		id := bus.NewID()
		if err := as.Submit(ctx, req, &bus.PendingRequest{ID: id, Subject: sub, Created: now.UnixMilli()}); err != nil {
			t.Fatal(err)
		}
		waited := make(chan error, 1)
		go func() {
			_, err := as.Wait(ctx, id, 1, time.Now)
			waited <- err
		}()
		list, err := bs.List(ctx, time.Now())
		if err != nil || len(list) != 1 || list[0].Request.ID != id {
			t.Fatalf("bob lists %d pending (%v), want alice's %s", len(list), err, id)
		}
		sa, err := bus.SignApproval(appr, "bob", &list[0].Request.Subject, now, now.Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		if err := bs.Approve(ctx, id, sa); err != nil {
			t.Fatal(err)
		}
		if err := <-waited; err != nil {
			t.Fatalf("alice's wait: %v", err)
		}
		alicev.quiet(t)
		bobv.quiet(t)
	})
}
