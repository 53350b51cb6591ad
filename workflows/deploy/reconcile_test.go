package deploy

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/signetbus/signet/workflows"
	"github.com/signetbus/signet/workflows/fleettest"
)

// TestLoadBalancerReconciledWhenItReturns: lb2's responder stops
// answering when batch 2 starts, so batch 2's drains and enables reach
// lb1 only and record lb2 as not reached; lb2 answers again when batch 3
// starts. Without waiting for a resume, the run sends lb2 each batch-2
// host's last change (its enable), says so in a "reconcile enable" step,
// and ends with nothing left unreached; batch 3's changes reach lb2 too.
// Before (or with the reconcile ticks turned off), the recap named every
// host from batch 2 on as not reached by lb2 and only --resume fixed it.
func TestLoadBalancerReconciledWhenItReturns(t *testing.T) {
	f := fleet9()
	f.ReportSilent = true
	// A few milliseconds per call, so that the run lasts long enough for
	// the reconcile ticks (every 20 ms) to meet lb2 back during batch 3.
	f.Hook = func(context.Context, string, workflows.Call) { time.Sleep(3 * time.Millisecond) }
	lb2 := []string{"lb2 haproxy.drain", "lb2 haproxy.enable", "lb2 haproxy.status", "lb2 rpcutil.ping"}
	ev := &evlog{}
	ev.hook = func(e workflows.Event) {
		if e.Type != workflows.EventBatchStart {
			return
		}
		f.Update(func(f *fleettest.Fleet) {
			for _, k := range lb2 {
				f.Silent[k] = e.Batch == 2
			}
		})
	}
	o := Options{App: newApp(t), Version: "1.4.2", Env: "prod", Yes: true, Output: ev, Format: "json", Caller: f,
		Store: workflows.NewMemStore(), User: "alice@bastion", ReconcileEvery: 20 * time.Millisecond}
	recap, err := Run(context.Background(), nil, o)
	if err != nil {
		t.Fatal(err)
	}
	if len(recap.Unreached) != 0 {
		t.Fatalf("recap unreached %v, want none: lb2 came back during the run", recap.Unreached)
	}
	var batch2 []string
	reconciled := map[string]bool{}
	for _, e := range ev.of(workflows.EventBatchStart) {
		if e.Batch == 2 {
			batch2 = e.Hosts
		}
	}
	for _, e := range ev.of(workflows.EventStepDone) {
		if e.Step == "reconcile "+StepEnable {
			if e.Status == workflows.StepFailed {
				t.Errorf("%s: %s", e.Host, e.Error)
			}
			reconciled[e.Host] = true
		}
	}
	if len(batch2) == 0 {
		t.Fatal("no batch 2")
	}
	log := strings.Join(f.Log(), "\n")
	for _, h := range batch2 {
		if !reconciled[h] {
			t.Errorf("%s: no reconcile of its enable on lb2", h)
		}
		if !strings.Contains(log, "lb2 haproxy.enable@"+h) {
			t.Errorf("lb2 was never sent %s's enable:\n%s", h, log)
		}
	}
	// Batch 3's hosts reach lb2 directly once it is off the silent list;
	// one whose change came before that is reconciled too. Either way lb2
	// ends with every host enabled.
	for _, h := range []string{"web1", "web2", "web3", "web4", "web5", "web6", "web7", "web8", "web9"} {
		if slices.Contains(batch2, h) {
			continue
		}
		if !strings.Contains(log, "lb2 haproxy.enable@"+h) {
			t.Errorf("lb2 was never sent %s's enable", h)
		}
	}
}
