package bus

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/signetbus/signet/internal/keys/keytest"
)

// A pending plan too big for one broker message (incompressible host
// names, several MB) is stored compressed in parts and read back whole:
// its signature checks and its root is re-derived. A broker user who
// swaps or drops a part, or rewrites the entry's digest to match, makes
// an entry that does not verify.
func TestBigPendingPlanInParts(t *testing.T) {
	_, store := approvalStoreOnBroker(t)
	// Its own deadline: under -race on a loaded machine the plan alone
	// takes seconds.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	alice := keytest.Signer(t)
	plan := &ApprovalPlan{Workflow: "deploy", App: "shop", Version: "2.0.0", Env: "prod"}
	var hosts []string
	for i := 0; i < 4000; i++ {
		b := make([]byte, 96)
		rand.Read(b)
		hosts = append(hosts, hex.EncodeToString(b)+fmt.Sprintf("-%d.prod.example.com", i))
	}
	plan.Batches = [][]string{hosts}
	plan.Steps = []PlanStep{{Name: "update", Agent: "package", Action: "update", Params: map[string]any{"package": "shop", "version": "2.0.0"}, Hosts: hosts}}
	sub := &ApprovalSubject{Collective: "t", Requester: ssh.FingerprintSHA256(alice.PublicKey()), RequesterName: "alice", Reason: "CHG-1",
		Expires: time.Now().Add(time.Hour).UnixMilli()}
	if err := sub.SetPlan(plan); err != nil {
		t.Fatal(err)
	}
	id := NewID()
	if err := store.Submit(ctx, alice, &PendingRequest{ID: id, Subject: *sub, Created: time.Now().UnixMilli()}); err != nil {
		t.Fatal(err)
	}
	e, err := store.kv.Get(ctx, "request."+id)
	if err != nil {
		t.Fatal(err)
	}
	var head storedPending
	if err := json.Unmarshal(e.Value(), &head); err != nil {
		t.Fatal(err)
	}
	if head.Parts < 2 {
		t.Fatalf("stored in %d parts, want the test's plan to need at least 3", head.Parts+1)
	}
	p, err := store.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Request.Subject.Check(); err != nil || p.Request.Subject.Root.Hash != sub.Root.Hash || len(p.Request.Subject.Plan.Steps[0].Hosts) != len(hosts) {
		t.Fatalf("read back: %v", err)
	}

	one, _ := store.kv.Get(ctx, partKey(id, 1))
	two, _ := store.kv.Get(ctx, partKey(id, 2))
	// Parts swapped.
	if _, err := store.kv.Put(ctx, partKey(id, 1), two.Value()); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Get(ctx, id); !errors.Is(err, ErrApproval) {
		t.Fatalf("parts swapped: %v", err)
	}
	// The digest rewritten to match: the signature is over the plan.
	z := append([]byte(nil), head.Gzip...)
	for n := 1; n <= head.Parts; n++ {
		v, _ := store.kv.Get(ctx, partKey(id, n))
		z = append(z, v.Value()...)
	}
	forged := head
	forged.GzipSHA256 = sha256Hex(z)
	b, _ := json.Marshal(forged)
	if _, err := store.kv.Put(ctx, "request."+id, b); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Get(ctx, id); !errors.Is(err, ErrApproval) {
		t.Fatalf("parts swapped, digest rewritten: %v", err)
	}
	// A part dropped.
	if _, err := store.kv.Put(ctx, partKey(id, 1), one.Value()); err != nil {
		t.Fatal(err)
	}
	if err := store.kv.Delete(ctx, partKey(id, 2)); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Get(ctx, id); !errors.Is(err, ErrApproval) {
		t.Fatalf("a part dropped: %v", err)
	}
	if l, err := store.List(ctx, time.Now()); err != nil || len(l) != 0 {
		t.Fatalf("listed %d (%v), want the broken entry left out", len(l), err)
	}
}
