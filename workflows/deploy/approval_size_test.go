package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/crypto/ssh"

	"github.com/signetbus/signet/bus"
	"github.com/signetbus/signet/internal/broker/brokertest"
	"github.com/signetbus/signet/internal/keys/keytest"
	"github.com/signetbus/signet/workflows"
	"github.com/signetbus/signet/workflows/buscaller"
	"github.com/signetbus/signet/workflows/fleettest"
)

// The pending entry of a plan-approved deploy holds the whole plan for
// the approver. Submitted to a real broker (default max_payload, 1 MB)
// and read back (signature checked, root re-derived as `signet approve`
// does), for a simulated fleet of 100 and 1,000 hosts, with on_failure
// hold and rollback (SIGNET_PLAN_SIZES=1 adds 3,000 and 10,000: minutes).
// Before the entry was compressed, 1,000 hosts did not fit. The figures in
// docs/security.md come from its log (go test ./workflows/deploy -run
// TestApprovalPlanSizes -v).
func TestApprovalPlanSizes(t *testing.T) {
	sizes := []int{100, 1000}
	if os.Getenv("SIGNET_PLAN_SIZES") != "" {
		sizes = append(sizes, 3000, 10000)
	}
	s := brokertest.Start(t)
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ctx := context.Background()
	store, err := bus.OpenApprovalStore(ctx, nc, "t")
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, bus.ApprovalBucket("t"))
	if err != nil {
		t.Fatal(err)
	}
	alice := keytest.Signer(t)
	for _, n := range sizes {
		for _, onFailure := range []string{workflows.OnFailureHold, workflows.OnFailureRollback} {
			plan := bigPlan(t, n, onFailure)
			sub := &bus.ApprovalSubject{Collective: "t", Requester: ssh.FingerprintSHA256(alice.PublicKey()), RequesterName: "alice",
				Reason: "CHG-1", Expires: time.Now().Add(time.Hour).UnixMilli()}
			if err := sub.SetPlan(plan); err != nil {
				t.Fatal(err)
			}
			id := bus.NewID()
			if err := store.Submit(ctx, alice, &bus.PendingRequest{ID: id, Subject: *sub, Created: time.Now().UnixMilli()}); err != nil {
				t.Errorf("%d hosts, on_failure %s: %d leaves: submit: %v", n, onFailure, sub.Root.Leaves, err)
				continue
			}
			e, err := kv.Get(ctx, "request."+id)
			if err != nil {
				t.Fatal(err)
			}
			p, err := store.Get(ctx, id)
			if err != nil {
				t.Fatalf("%d hosts: read back: %v", n, err)
			}
			if err := p.Request.Subject.Check(); err != nil || p.Request.Subject.Root.Hash != sub.Root.Hash {
				t.Fatalf("%d hosts: the plan read back does not give the root: %v", n, err)
			}
			stored := len(e.Value())
			var head struct {
				Parts int `json:"parts"`
			}
			if err := json.Unmarshal(e.Value(), &head); err != nil {
				t.Fatal(err)
			}
			for i := 1; i <= head.Parts; i++ {
				pe, err := kv.Get(ctx, fmt.Sprintf("part.%s.%d", id, i))
				if err != nil {
					t.Fatal(err)
				}
				stored += len(pe.Value())
			}
			// The run keeps the approved plan in its signed state, for
			// --resume: one more message of the plan's size.
			sealed, err := workflows.SealRunState(alice, &workflows.RunState{ID: "r1", Workflow: "deploy", Approval: &bus.ApprovalProof{Subject: *sub}})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%d hosts, on_failure %s: sealed run state with the plan: %d bytes", n, onFailure, len(sealed))
			raw, _ := json.Marshal(&bus.PendingRequest{ID: id, Subject: *sub})
			t.Logf("%d hosts, on_failure %s: %d leaves, %d distinct calls, signed payload %d bytes, stored %d bytes in %d entries",
				n, onFailure, sub.Root.Leaves, len(plan.Steps), len(raw), stored, head.Parts+1)
		}
	}
}

// bigPlan is the approved plan of a deploy of 1.4.2 to n simulated hosts
// named like shop0042.prod.example.com, in batches of 10%.
func bigPlan(t *testing.T, n int, onFailure string) *bus.ApprovalPlan {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("shop%04d.prod.example.com", i)
	}
	f := fleettest.New(names, []string{"a", "b", "c"})
	var out bytes.Buffer
	o := opts(t, f, workflows.NewMemStore(), &out)
	o.App.BatchSize = "10%"
	o.Policy.OnFailure = onFailure
	var plan *bus.ApprovalPlan
	stop := errors.New("measured")
	o.Approve = func(_ context.Context, pv *workflows.PlanView) error {
		var err error
		plan, err = buscaller.PlanSubject(pv, buscaller.PlanInfo{Workflow: "deploy", App: "app", Version: "1.4.2", Env: "prod"})
		if err != nil {
			return err
		}
		return stop
	}
	if _, err := Run(context.Background(), nil, o); !errors.Is(err, stop) {
		t.Fatalf("%d hosts: %v", n, err)
	}
	return plan
}
