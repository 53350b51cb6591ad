package bus

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"golang.org/x/crypto/ssh"

	"github.com/signetbus/signet/internal/broker/brokertest"
	"github.com/signetbus/signet/internal/keys/keytest"
)

// The approvals bucket on a real broker: a requester submits, an approver
// approves, the requester's wait returns the approval. A pending request
// that names a requester other than its signer (a broker user's forgery)
// is not shown, and the requester's own approval, a second one by the same
// key and an expired one are not what the wait counts.
func TestApprovalStoreFlow(t *testing.T) {
	ctx, store := approvalStoreOnBroker(t)
	alice, carol, mallory := keytest.Signer(t), keytest.Signer(t), keytest.Signer(t)
	now := time.Now()
	sub := ApprovalSubject{Kind: SubjectRequest, Collective: "t", Requester: ssh.FingerprintSHA256(alice.PublicKey()), RequesterName: "alice",
		Reason: "CHG-1", Expires: now.Add(time.Hour).UnixMilli(), Agent: "package", Action: "update", Params: map[string]any{"version": "1.2"}, Targets: []string{"web1"}}
	id := NewID()
	if err := store.Submit(ctx, mallory, &PendingRequest{ID: id, Subject: sub, Created: now.UnixMilli()}); err == nil {
		t.Fatal("submitted a request naming another requester")
	}
	if err := store.Submit(ctx, alice, &PendingRequest{ID: id, Subject: sub, Created: now.UnixMilli()}); err != nil {
		t.Fatal(err)
	}
	// A broker user writes a pending request in alice's name, signed by mallory.
	forged := NewID()
	fsub := sub
	fsub.Reason = "trust me"
	payload, _ := json.Marshal(PendingRequest{ID: forged, Subject: fsub, Created: now.UnixMilli()})
	sa, err := SignApproval(mallory, "mallory", &sub, now, now.Add(time.Hour)) // any signed blob
	if err != nil {
		t.Fatal(err)
	}
	sa.Payload = payload
	b, _ := json.Marshal(sa)
	if _, err := store.kv.Put(ctx, "request."+forged, b); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Get(ctx, forged); !errors.Is(err, ErrApproval) {
		t.Fatalf("forged pending request: %v", err)
	}
	list, err := store.List(ctx, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].Request.ID != id {
		t.Fatalf("listed %d pending requests, want only %s", len(list), id)
	}

	got := make(chan []SignedApproval, 1)
	go func() {
		v, err := store.Wait(ctx, id, 1, time.Now)
		if err != nil {
			t.Error(err)
		}
		got <- v
	}()
	for _, a := range []struct {
		s   ssh.Signer
		exp time.Time
	}{{alice, now.Add(time.Hour)}, {carol, now.Add(-time.Minute)}} { // own, then expired
		sa, err := SignApproval(a.s, "x", &sub, now.Add(-2*time.Minute), a.exp)
		if err != nil {
			t.Fatal(err)
		}
		if err := store.Approve(ctx, id, sa); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case v := <-got:
		t.Fatalf("wait returned %d approvals before a valid one", len(v))
	case <-time.After(300 * time.Millisecond):
	}
	sa, err = SignApproval(carol, "carol", &sub, now, now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Approve(ctx, id, sa); err != nil {
		t.Fatal(err)
	}
	v := <-got
	if len(v) != 1 {
		t.Fatalf("wait returned %d approvals, want carol's", len(v))
	}
	if a, _, err := OpenApproval(&v[0]); err != nil || a.Approver != "carol" {
		t.Fatalf("approval %+v %v, want carol's", a, err)
	}
}

// TestApprovalStoreUsesNoConsumer: listing, getting and waiting read the
// bucket by message gets only, never through a consumer (a locked-down
// broker refuses operators consumers on buckets they write; see
// ApprovalStore), and a deleted approval or another request's approval is
// not counted.
func TestApprovalStoreUsesNoConsumer(t *testing.T) {
	ctx, store := approvalStoreOnBroker(t)
	alice, carol, dave := keytest.Signer(t), keytest.Signer(t), keytest.Signer(t)
	now := time.Now()
	sub := ApprovalSubject{Kind: SubjectRequest, Collective: "t", Requester: ssh.FingerprintSHA256(alice.PublicKey()), RequesterName: "alice",
		Reason: "CHG-2", Expires: now.Add(time.Hour).UnixMilli(), Agent: "rpcutil", Action: "ping", Targets: []string{"web1"}}
	id, other := NewID(), NewID()
	for _, i := range []string{id, other} {
		if err := store.Submit(ctx, alice, &PendingRequest{ID: i, Subject: sub, Created: now.UnixMilli()}); err != nil {
			t.Fatal(err)
		}
	}
	for _, a := range []struct {
		s  ssh.Signer
		id string
	}{{carol, id}, {dave, id}, {dave, other}} {
		sa, err := SignApproval(a.s, "x", &sub, now, now.Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		if err := store.Approve(ctx, a.id, sa); err != nil {
			t.Fatal(err)
		}
	}
	if err := store.kv.Delete(ctx, "approval."+id+"."+keyTag(ssh.FingerprintSHA256(dave.PublicKey()))); err != nil {
		t.Fatal(err)
	}
	list, err := store.List(ctx, now)
	if err != nil || len(list) != 2 {
		t.Fatalf("listed %d pending (%v), want 2", len(list), err)
	}
	p, err := store.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Approvals) != 1 {
		t.Fatalf("%d approvals of %s, want carol's only (dave's deleted, his other one for another request)", len(p.Approvals), id)
	}
	if v, err := store.Wait(ctx, id, 1, time.Now); err != nil || len(v) != 1 {
		t.Fatalf("wait: %d %v", len(v), err)
	}
	info, err := store.st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Consumers != 0 {
		t.Fatalf("the store made %d consumers of its bucket", info.State.Consumers)
	}
}

// approvalStoreOnBroker opens the approvals bucket of collective "t" on a
// real embedded broker; the context ends with the test (20 s at most).
func approvalStoreOnBroker(t *testing.T) (context.Context, *ApprovalStore) {
	t.Helper()
	s := brokertest.Start(t)
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	store, err := OpenApprovalStore(ctx, nc, "t")
	if err != nil {
		t.Fatal(err)
	}
	return ctx, store
}
