package deploy

import (
	"bytes"
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/signetbus/signet/bus"
	"github.com/signetbus/signet/workflows"
	"github.com/signetbus/signet/workflows/buscaller"
	"github.com/signetbus/signet/workflows/fleettest"
)

// coverCheck is a Caller that asks, of every call the deploy makes whose
// agent.action is a step of the approved plan, whether each host it
// reaches would find it covered by the plan (bus.ApprovalSubject.Covers,
// the host's own check) as the bus caller carries it: the plan tree's
// header and the call's own step with its inclusion proof.
type coverCheck struct {
	*fleettest.Fleet
	t       *testing.T
	sub     *bus.ApprovalSubject
	tree    *bus.PlanTree
	checked atomic.Int64
}

func (c *coverCheck) Call(ctx context.Context, call workflows.Call) ([]workflows.Result, error) {
	if c.sub == nil {
		// Before the hook only the preflight's read-only ping and, with
		// on_failure rollback, the package status read may go out: the
		// plan names the hosts that answered and their versions.
		if call.Agent+"."+call.Action != "rpcutil.ping" && call.Agent+"."+call.Action != "package.status" {
			c.t.Errorf("%s.%s called before the Approve hook", call.Agent, call.Action)
		}
		return c.Fleet.Call(ctx, call)
	}
	inPlan := false
	for _, s := range c.sub.Plan.Steps {
		inPlan = inPlan || (s.Agent == call.Agent && s.Action == call.Action)
	}
	if inPlan {
		f, err := buscaller.ParseFilter(call.Filter)
		if err != nil {
			c.t.Fatal(err)
		}
		req := &bus.Request{Collective: "t", Agent: call.Agent, Action: call.Action, Params: call.Params, Targets: call.Hosts, Filter: f,
			Created: time.Now().UnixMilli()}
		// What the bus caller carries: the header and the call's own
		// step with its proof.
		header := c.sub.Header()
		req.Approval = &bus.ApprovalProof{Subject: header, Step: c.tree.ProveCall(call.Agent, call.Action, call.Params, call.Hosts, f)}
		hosts := call.Hosts
		if len(hosts) == 0 {
			found, _ := c.Discover(ctx, call.Filter)
			for _, h := range found {
				hosts = append(hosts, h.Identity)
			}
		}
		for _, h := range hosts {
			n := c.Node(h)
			if err := header.Covers(req, &bus.Node{Identity: h, Facts: n.Facts, Agents: n.Agents}, "SHA256:alice", time.Second); err != nil {
				c.t.Errorf("%s on %s: %v", call.Agent+"."+call.Action, h, err)
			}
			c.checked.Add(1)
		}
	}
	return c.Fleet.Call(ctx, call)
}

// The real deploy's step requests, all of them on every host (the
// HAProxy broadcasts on the load balancers included), are covered by the
// plan the Approve hook is given; the hook runs before any call but the
// preflight's ping, and an error from it stops the deploy with nothing
// touched.
func TestDeployApproveHookPlanCoversEveryStep(t *testing.T) {
	f := fleet9()
	var out bytes.Buffer
	o := opts(t, f, workflows.NewMemStore(), &out)
	stop := errors.New("not approved")
	o.Approve = func(context.Context, *workflows.PlanView) error { return stop }
	if _, err := Run(context.Background(), nil, o); !errors.Is(err, stop) {
		t.Fatalf("deploy with a refusing hook: %v", err)
	}
	for _, l := range f.Log() {
		t.Fatalf("the deploy called %q before approval", l)
	}

	cc := &coverCheck{Fleet: f, t: t}
	o.Caller = cc
	o.Approve = func(_ context.Context, pv *workflows.PlanView) error {
		plan, err := buscaller.PlanSubject(pv, buscaller.PlanInfo{Workflow: "deploy", App: "app", Version: "1.4.2", Env: "prod"})
		if err != nil {
			return err
		}
		sub := &bus.ApprovalSubject{Collective: "t", Requester: "SHA256:alice", Reason: "r",
			Expires: time.Now().Add(time.Hour).UnixMilli()}
		if err := sub.SetPlan(plan); err != nil {
			return err
		}
		tree, err := bus.NewPlanTree(plan)
		if err != nil {
			return err
		}
		cc.sub, cc.tree = sub, tree
		return nil
	}
	if _, err := Run(context.Background(), nil, o); err != nil {
		t.Fatalf("deploy: %v\n%s", err, out.String())
	}
	// Seven steps on each of nine hosts, and the two HAProxy broadcasts
	// per host on both load balancers; before each host is touched, the
	// observer's package and maintenance status, and its HAProxy status
	// on both load balancers.
	if want := int64(9*7 + 9*2*2 + 9*(2+2)); cc.checked.Load() != want {
		t.Errorf("checked %d step deliveries, want %d", cc.checked.Load(), want)
	}
}
