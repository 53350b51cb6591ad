package agents

import (
	"context"
	"fmt"
	"math/bits"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/signetbus/signet/bus"
	"github.com/signetbus/signet/workflows"
	"github.com/signetbus/signet/workflows/buscaller"
	"github.com/signetbus/signet/workflows/deploy"
)

const treeApp = `version: 1
name: shop
package: shop
service: shop
hosts: [class=web]
haproxy: {backend: shop, lb_filter: [class=lb], drain_timeout: 10s}
health: {url: "http://127.0.0.1:8080/version"}
`

// bigPlan is the real deploy's plan of shop 2.0.0 over n hosts: web1 and
// web2 (real hosts of the apFleet) and shop003.prod.example.com... (not
// running), in batches
// of ten.
func bigPlan(t *testing.T, n int) *bus.ApprovalPlan {
	t.Helper()
	app, err := deploy.ParseApp(strings.NewReader(treeApp))
	must(t, err)
	var hosts []workflows.Host
	var batches [][]string
	for i := 1; i <= n; i++ {
		id := fmt.Sprintf("shop%03d.prod.example.com", i)
		if i <= 2 {
			id = fmt.Sprintf("web%d", i)
		}
		hosts = append(hosts, workflows.Host{Identity: id, Facts: map[string]string{"zone": "a", "env": "prod"}})
		if (i-1)%10 == 0 {
			batches = append(batches, nil)
		}
		batches[len(batches)-1] = append(batches[len(batches)-1], id)
	}
	pv, err := workflows.BuildPlan("deploy shop 2.0.0 to prod", batches, hosts, "zone", app.Steps(),
		map[string]string{"version": "2.0.0", "env": "prod", "app": "shop"})
	must(t, err)
	plan, err := buscaller.PlanSubject(pv, buscaller.PlanInfo{Workflow: "deploy", App: "shop", Version: "2.0.0", Env: "prod"})
	must(t, err)
	return plan
}

// A plan-approved deploy of 300 hosts: its update step on web1, sent by
// the caller a deploy uses, fits in the hosts' default max_request_bytes
// (64 KiB) and runs; another version is not a step of it.
func TestLargePlanApprovedStepFits(t *testing.T) {
	f := newApFleet(t, "")
	sub := &bus.ApprovalSubject{Collective: "t", Requester: ssh.FingerprintSHA256(f.alice.PublicKey()),
		RequesterName: "alice", Reason: "CHG-11 big deploy", Expires: time.Now().Add(time.Hour).UnixMilli()}
	must(t, sub.SetPlan(bigPlan(t, 300)))
	proof := &bus.ApprovalProof{Subject: *sub, Approvals: []bus.SignedApproval{approve(t, f.carol, "carol", sub, time.Hour)}}
	client, err := bus.NewClient(bus.ClientConfig{Conn: f.nc, Collective: "t", Signer: f.alice, User: "alice", HostKeys: f.hostKeys})
	must(t, err)
	caller := &buscaller.Caller{Client: client, Approval: proof}
	call := func(version string) workflows.Result {
		t.Helper()
		res, err := caller.Call(context.Background(), workflows.Call{Agent: "package", Action: "update",
			Params: map[string]any{"package": "shop", "version": version}, Hosts: []string{"web1"}, Timeout: 5 * time.Second})
		if err != nil && len(res) == 0 {
			t.Fatal(err)
		}
		if len(res) != 1 {
			t.Fatalf("%d results, want web1's", len(res))
		}
		return res[0]
	}
	before := f.runs.Load()
	if r := call("2.0.0"); !r.OK {
		t.Fatalf("the approved update on web1: %s", r.Error)
	}
	if f.runs.Load() != before+1 {
		t.Fatalf("the update did not run")
	}
	if r := call("9.9.9"); r.OK || !strings.Contains(r.Error, needsNone) {
		t.Fatalf("an update outside the plan: ok=%v %s", r.OK, r.Error)
	}
}

// What a host refuses of a plan tree: a step proven for another host, a
// request that also targets a host its step does not name, a leaf edited
// under a genuine proof, a proof at another index, a header edited (the
// approvals are for another digest), and a request without its step.
func TestPlanTreeStepRefusals(t *testing.T) {
	f := newApFleet(t, "")
	sub := &bus.ApprovalSubject{Collective: "t", Requester: ssh.FingerprintSHA256(f.alice.PublicKey()),
		RequesterName: "alice", Reason: "CHG-12", Expires: time.Now().Add(time.Hour).UnixMilli()}
	must(t, sub.SetPlan(bigPlan(t, 40)))
	tree, err := bus.NewPlanTree(sub.Plan)
	must(t, err)
	approvals := []bus.SignedApproval{approve(t, f.carol, "carol", sub, time.Hour)}
	v2 := map[string]any{"package": "shop", "version": "2.0.0"}
	leaf := func(host string) *bus.LeafProof {
		p := tree.Prove(bus.PlanLeaf{Agent: "package", Action: "update", Params: v2, Host: host})
		if p == nil {
			t.Fatalf("no update leaf for %s", host)
		}
		return p
	}
	carry := func(h bus.ApprovalSubject, step *bus.LeafProof) *bus.ApprovalProof {
		return &bus.ApprovalProof{Subject: h, Approvals: approvals, Step: step}
	}
	header := sub.Header()

	res := f.send(t, f.alice, "update", v2, carry(header, leaf("web1")), "web1")
	wantStatus(t, res, "web1", bus.ResultOK)

	res = f.send(t, f.alice, "update", v2, carry(header, leaf("web2")), "web1")
	wantRefused(t, res, "web1", needsNone, "this host (web1) is not among the approved targets")

	res = f.send(t, f.alice, "update", v2, carry(header, leaf("web1")), "web1", "web2")
	wantRefused(t, res, "web1", needsNone, "also targets web2")
	wantRefused(t, res, "web2", needsNone, "this host (web2) is not among the approved targets")

	edited := leaf("web1")
	edited.Leaf.Params = updateParams
	res = f.send(t, f.alice, "update", updateParams, carry(header, edited), "web1")
	wantRefused(t, res, "web1", needsNone, "is not in the approved plan")

	moved := leaf("web1")
	moved.Index ^= 1
	res = f.send(t, f.alice, "update", v2, carry(header, moved), "web1")
	wantRefused(t, res, "web1", needsNone, "is not in the approved plan")

	other := header
	root := *header.Root
	root.Env = "dev"
	other.Root = &root
	res = f.send(t, f.alice, "update", v2, carry(other, leaf("web1")), "web1")
	wantRefused(t, res, "web1", needsNone, "approval 1 not counted")

	res = f.send(t, f.alice, "update", v2, carry(header, nil), "web1")
	wantRefused(t, res, "web1", needsNone, "carries no step of the approved deploy of shop 2.0.0")
}

// The signed request of a plan-approved deploy's update step, as the bus
// caller sends it, stays small whatever the plan's size; the whole plan
// (kind plan, as before) grows with it. Run with -v for the figures.
func TestPlanRequestSizes(t *testing.T) {
	alice := signer(t)
	carol := signer(t)
	v2 := map[string]any{"package": "shop", "version": "2.0.0"}
	for _, n := range []int{100, 300, 1000} {
		plan := bigPlan(t, n)
		base := bus.ApprovalSubject{Collective: "t", Requester: ssh.FingerprintSHA256(alice.PublicKey()),
			RequesterName: "alice", Reason: "CHG-13", Expires: time.Now().Add(time.Hour).UnixMilli()}
		full := base
		full.Kind, full.Plan = bus.SubjectPlan, plan
		tree := base
		must(t, tree.SetPlan(plan))
		frame := func(a *bus.ApprovalProof) int {
			req := &bus.Request{Version: bus.ProtocolVersion, ID: bus.NewID(), Collective: "t", Agent: "package", Action: "update", Params: v2,
				Targets: []string{"web1"}, Sender: bus.Sender{User: "alice"}, Created: time.Now().UnixMilli(), TTL: 60, Approval: a}
			b, err := bus.SignRequest(alice, req)
			must(t, err)
			return len(b)
		}
		before := frame(&bus.ApprovalProof{Subject: full, Approvals: []bus.SignedApproval{approve(t, carol, "carol", &full, time.Hour)}})
		caller := &buscaller.Caller{Approval: &bus.ApprovalProof{Subject: tree, Approvals: []bus.SignedApproval{approve(t, carol, "carol", &tree, time.Hour)}}}
		carried, err := caller.CarriedApproval(bus.Query{Agent: "package", Action: "update", Params: v2, Targets: []string{"web1"}})
		must(t, err)
		if carried.Step == nil {
			t.Fatalf("%d hosts: the update on web1 has no step proof", n)
		}
		after := frame(carried)
		t.Logf("%4d hosts (%5d leaves): update request %6d bytes with the whole plan, %5d with its step and a %d-hash proof (a leaf's proof has at most %d)",
			n, tree.Root.Leaves, before, after, len(carried.Step.Path), bits.Len(uint(tree.Root.Leaves-1)))
		if after > 4096 {
			t.Errorf("%d hosts: the step request is %d bytes, want at most 4 KiB", n, after)
		}
	}
}

// The approvals bucket holds the whole plan of a 1,000-host deploy for
// the approver, who sees it and recomputes its root.
func TestApprovalStoreHoldsABigPlan(t *testing.T) {
	f := newApFleet(t, "")
	ctx := context.Background()
	store, err := bus.OpenApprovalStore(ctx, f.nc, "t")
	must(t, err)
	sub := bus.ApprovalSubject{Collective: "t", Requester: ssh.FingerprintSHA256(f.alice.PublicKey()),
		RequesterName: "alice", Reason: "CHG-14", Expires: time.Now().Add(time.Hour).UnixMilli()}
	must(t, sub.SetPlan(bigPlan(t, 1000)))
	id := bus.NewID()
	must(t, store.Submit(ctx, f.alice, &bus.PendingRequest{ID: id, Subject: sub, Created: time.Now().UnixMilli()}))
	p, err := store.Get(ctx, id)
	must(t, err)
	if p.Request.Subject.Plan == nil || *p.Request.Subject.Root != *sub.Root {
		t.Fatalf("the pending plan came back without its plan or with another root")
	}
	sa, err := bus.SignApproval(f.carol, "carol", &p.Request.Subject, time.Now(), time.Now().Add(time.Hour))
	must(t, err)
	must(t, store.Approve(ctx, id, sa))
}
