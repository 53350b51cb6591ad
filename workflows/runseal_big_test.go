package workflows

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/signetbus/signet/bus"
)

// A run approved as a plan keeps the plan in its signed state, for
// --resume. The plan of a 1,000-host deploy is about 1 MB of JSON, over
// the broker's default max_payload: the state is stored compressed and
// read back whole, its signature checked.
func TestBigApprovedRunStateSaves(t *testing.T) {
	s, _ := kvStore(t, time.Minute)
	st, hosts := bigApprovedRunState(t)
	sealed, err := SealRunState(testSigner(t), st)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("sealed state of a %d-host plan: %d bytes", len(hosts), len(sealed))
	if err := s.Save(context.Background(), st); err != nil {
		t.Fatal(err)
	}
	got, err := s.Load(context.Background(), st.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Approval == nil || got.Approval.Subject.Check() != nil || got.Approval.Subject.Root.Hash != st.Approval.Subject.Root.Hash {
		t.Fatalf("the state read back does not hold the approved plan")
	}
}

// bigApprovedRunState is the run state of a 1,000-host deploy approved as
// a plan (about 1 MB of JSON before compression).
func bigApprovedRunState(tb testing.TB) (*RunState, []string) {
	tb.Helper()
	var hosts []string
	plan := &bus.ApprovalPlan{Workflow: "deploy", App: "shop", Version: "2.0.0", Env: "prod"}
	for i := 0; i < 1000; i++ {
		h := fmt.Sprintf("shop%04d.prod.example.com", i)
		hosts = append(hosts, h)
		plan.Steps = append(plan.Steps, bus.PlanStep{Name: "drain", Agent: "haproxy", Action: "drain",
			Params: map[string]any{"backend": "shop", "server": h, "timeout": "1m0s", "wait": true, "comment": fmt.Sprintf("%01000d", i)},
			Filter: bus.Filter{Agent: []string{"haproxy"}}})
	}
	plan.Batches = [][]string{hosts}
	sub := &bus.ApprovalSubject{Collective: "t", Requester: "SHA256:alice", Reason: "CHG-1", Expires: time.Now().Add(time.Hour).UnixMilli()}
	if err := sub.SetPlan(plan); err != nil {
		tb.Fatal(err)
	}
	st := NewRunState("deploy", [][]string{hosts}, map[string]string{"version": "2.0.0"})
	st.ID, st.Version = NewRunID(), "2.0.0"
	st.Approval = &bus.ApprovalProof{Subject: *sub}
	return st, hosts
}

// BenchmarkSealBigRunState: what sealing (JSON, gzip above 64 KiB, SSHSIG)
// costs the client on every save of a 1,000-host plan-approved run, the
// state being saved after every step.
func BenchmarkSealBigRunState(b *testing.B) {
	st, _ := bigApprovedRunState(b)
	signer := testSigner(b)
	var size int
	for b.Loop() {
		sealed, err := SealRunState(signer, st)
		if err != nil {
			b.Fatal(err)
		}
		size = len(sealed)
	}
	b.ReportMetric(float64(size), "sealed-bytes")
}
