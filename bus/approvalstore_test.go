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
	s := brokertest.Start(t)
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	store, err := OpenApprovalStore(ctx, nc, "t")
	if err != nil {
		t.Fatal(err)
	}
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
