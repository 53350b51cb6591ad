package provision_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/signetbus/signet/bus/control"
	"github.com/signetbus/signet/internal/keys/keytest"
)

// TestOperatorsCannotReplayControlDocuments: an operator's broker account
// may read the current revocation list and locks (signet lock --list), but
// not have the broker copy an older admin-signed document back into the
// bucket as the current one (a host that starts without its control_state
// would apply it: docs/security.md). Reading the raw message of a given
// sequence, by direct get or a consumer, would let it name the control key
// as the reply subject; it reads by message gets only, which answer in the
// broker's JSON.
func TestOperatorsCannotReplayControlDocuments(t *testing.T) {
	l := startLocked(t)
	root, _ := l.connect(t, "root")
	alice, alicev := l.connect(t, "alice")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	admin := keytest.Signer(t)
	store, err := control.OpenStore(ctx, root, collective, 0)
	if err != nil {
		t.Fatal(err)
	}
	trustAll := func(*control.Signed) error { return nil }
	for _, reason := range []string{"incident 1", "incident 2"} {
		_, err := store.Update(ctx, control.UpdateOptions{Kind: control.KindLocks, Signer: admin, By: "root", TrustBase: trustAll,
			Edit: func(d *control.Document) error {
				d.Locks = []control.Lock{{ID: "L1", Scope: control.Scope{All: true}, Reason: reason, By: "root", At: d.Issued}}
				return nil
			}})
		if err != nil {
			t.Fatal(err)
		}
	}
	stream := "KV_" + control.Bucket(collective)
	key := "$KV." + control.Bucket(collective) + "." + control.KindLocks

	// alice reads the current document, as signet lock --list does.
	as, err := control.OpenStore(ctx, alice, collective, 0)
	if err != nil {
		t.Fatal(err)
	}
	cur, _, err := as.Current(ctx, control.KindLocks)
	if err != nil || cur.Doc.Seq != 2 {
		t.Fatalf("alice reads the locks: %v %v, want seq 2", cur, err)
	}
	alicev.quiet(t)

	// Seq 1 back as the current value: a direct get and a consumer are
	// refused; a message get's answer is the broker's JSON.
	alice.PublishMsg(&nats.Msg{Subject: "$JS.API.DIRECT.GET." + stream, Reply: key, Data: []byte(`{"seq":1}`)})
	alice.Flush()
	alicev.refused(t, `Publish to "$JS.API.DIRECT.GET.`+stream)
	js, _ := jetstream.New(alice)
	if st, err := js.Stream(ctx, stream); err != nil {
		t.Fatal(err)
	} else {
		short, c := context.WithTimeout(ctx, 500*time.Millisecond)
		st.CreateOrUpdatePushConsumer(short, jetstream.ConsumerConfig{DeliverSubject: key, AckPolicy: jetstream.AckNonePolicy,
			DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: 1})
		c()
		alicev.refused(t, `Publish to "$JS.API.CONSUMER.CREATE.`+stream)
	}
	alice.PublishMsg(&nats.Msg{Subject: "$JS.API.STREAM.MSG.GET." + stream, Reply: key, Data: []byte(`{"seq":1}`)})
	alice.Flush()
	time.Sleep(200 * time.Millisecond)
	e, err := kv(t, root, control.Bucket(collective)).Get(ctx, control.KindLocks)
	if err != nil {
		t.Fatal(err)
	}
	if sd, err := control.Open(e.Value()); err == nil {
		t.Fatalf("the current locks value is an admin-signed document of seq %d after alice's replay, want the broker's JSON", sd.Doc.Seq)
	}
}
