package deploy

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/signetbus/signet/workflows"
	"github.com/signetbus/signet/workflows/deploy"
)

// TestLoadBalancerReturnsDuringTheRun: as in TestDeadLoadBalancer, the
// first host of batch 2 has its responder (and with it that host's
// HAProxy agent) killed as its start step begins; here it comes back as
// batch 3 starts. The run brings it up to date by itself: its batch-mate's
// enable, which it missed, is sent to it alone ("reconcile enable"), it is
// taken off the silent list, and the run ends with no host recorded as not
// reached, where before the recap named the batch-mate and batch 3 and
// only a --resume cleared them. (The stage's hosts share one real
// HAProxy, so this shows the signed calls reaching the returned host's
// agent, not a second HAProxy's table.)
func TestLoadBalancerReturnsDuringTheRun(t *testing.T) {
	s := startStage(t)
	op := operator(t, s)
	appFile := appVariant(t, s, map[string]string{"stop_timeout: 20s": "stop_timeout: 3s", "drain_timeout: 10s": "drain_timeout: 1s",
		"on_failure: hold\n": "on_failure: hold\nmax_failures: \"1\"\n"})
	batches := planFile(t, s, op, appFile, "1.1")
	victim, mate := batches[1][0], batches[1][1]
	back := make(chan error, 1)
	rec := &recorder{hook: func(e workflows.Event) {
		switch {
		case e.Type == workflows.EventStepStart && e.Host == victim && e.Step == deploy.StepStart:
			s.Lab.KillHost(victim)
		case e.Type == workflows.EventBatchStart && e.Batch == 3:
			go func() { back <- s.Lab.StartHost(victim) }()
		}
	}}
	o := deployOpts(s, op, "1.1", rec)
	o.AppFile = appFile
	o.ReconcileEvery = 500 * time.Millisecond
	recap, err := deploy.Run(testCtx(t), nil, o)
	var fe *workflows.FailuresError
	if !errors.As(err, &fe) || fe.Spent || len(fe.Failures) != 1 || fe.Failures[0].Host != victim {
		t.Fatalf("deploy: %v; want only %s failed, within max_failures 1", err, victim)
	}
	if err := <-back; err != nil {
		t.Fatal(err)
	}
	rec.done(t)
	if len(recap.Unreached) != 0 {
		t.Errorf("recap unreached %v, want none: %s came back during the run", recap.Unreached, victim)
	}
	e, ok := stepDone(rec.Events(), mate, "reconcile "+deploy.StepEnable)
	if !ok || e.Status == workflows.StepFailed || len(e.Results) != 1 || e.Results[0].Host != victim || !e.Results[0].OK {
		t.Errorf("%s: reconcile enable %v %+v; want it sent to %s alone, answered", mate, ok, e, victim)
	}
	for _, h := range append(append(slices.Clone(batches[0]), mate), batches[2]...) {
		wantInService(t, s, recap, h, "1.1")
	}
	wantHeld(t, s, victim, "1.1")
}
