package deploy

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/signetbus/signet/workflows"
	"github.com/signetbus/signet/workflows/deploy"
)

// brokerDown is how long each kill keeps the broker away, as in the
// report that found runs stalling for a step's whole timeout.
const brokerDown = 5 * time.Second

// faultBound bounds a deploy hit by every kill below: far above what the
// kills and the steps cost, far below the update step's 10-minute timeout.
// A run that waits a step's full timeout for a reply lost in a restart
// runs into it.
const faultBound = 2 * time.Minute

// TestBrokerKilledAtEachStep kills the broker for 5 s (same storage) at a
// different step of the rolling deploy each time: at the stop, update,
// health and enable of successive hosts. The run must never wait a step's
// whole timeout and must end in a known state: done, or a step error that
// names host and step and that a resume finishes. Requests or replies lost
// in a restart must be noticed (no responders, a reconnect) and asked
// again, not waited out: this passes only with the client's retry of lost
// requests (issue 7, "Faults end in a known state, quickly").
func TestBrokerKilledAtEachStep(t *testing.T) {
	s := startStage(t)
	op := operator(t, s)
	batches := plan(t, s, op, "1.1")
	hosts := flatten(batches)
	kills := map[string]string{ // host -> step at whose start the broker dies
		hosts[0]:            deploy.StepStop,
		hosts[1]:            deploy.StepUpdate,
		hosts[2]:            deploy.StepHealth,
		hosts[len(hosts)-1]: deploy.StepEnable,
	}
	var mu sync.Mutex
	// brokerMu orders kills and restarts: with hosts now running steps
	// side by side, a kill can come while the previous restart is still
	// replacing s.Lab.Broker (-race saw it).
	var brokerMu sync.Mutex
	var wg sync.WaitGroup
	var killed []string
	var killErrs []error
	rec := &recorder{}
	rec.hook = func(e workflows.Event) {
		if e.Type != workflows.EventStepStart || kills[e.Host] != e.Step {
			return
		}
		mu.Lock()
		delete(kills, e.Host)
		killed = append(killed, e.Host+"/"+e.Step)
		mu.Unlock()
		// Kill now, while the step's request is on its way, and come back
		// later; the engine goes on meanwhile.
		brokerMu.Lock()
		s.Lab.Broker.Shutdown()
		brokerMu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(brokerDown)
			brokerMu.Lock()
			err := s.Lab.RestartBroker()
			brokerMu.Unlock()
			if err != nil {
				mu.Lock()
				killErrs = append(killErrs, err)
				mu.Unlock()
			}
		}()
	}
	ctx, cancel := context.WithTimeout(context.Background(), faultBound)
	defer cancel()
	start := time.Now()
	recap, err := deploy.Run(ctx, nil, deployOpts(s, op, "1.1", rec))
	wg.Wait()
	t.Logf("kills at %v; run ended after %s: %v", killed, time.Since(start).Round(time.Second), err)
	if len(killErrs) > 0 {
		t.Fatalf("restart broker: %v", killErrs)
	}
	if len(killed) == 0 {
		t.Fatal("no kill happened: the test did not exercise a restart")
	}
	for _, e := range rec.Events() {
		if e.Type == workflows.EventStepDone && e.Status == workflows.StepFailed {
			t.Logf("step failed: %s %s after %s: %s", e.Host, e.Step, e.Elapsed().Round(time.Second), e.Error)
			if strings.Contains(e.Error, "no response within") {
				t.Errorf("%s %s waited its whole timeout (%s) for a request or reply lost in a broker restart", e.Host, e.Step, e.Elapsed().Round(time.Second))
			}
		}
	}
	var ie *workflows.InterruptedError
	if errors.As(err, &ie) || ctx.Err() != nil {
		t.Fatalf("the run was still waiting after %s (a request or reply lost in a broker restart was waited out): %v", faultBound, err)
	}
	var se *workflows.StepError
	switch {
	case err == nil:
		if recap.Status != workflows.StatusDone {
			t.Fatalf("recap %s, want done", recap.Status)
		}
	case errors.As(err, &se):
		if s.Host(se.Host) == nil || se.Step == "" {
			t.Fatalf("step error %+v: want a host and a step", se)
		}
		rctx, rcancel := context.WithTimeout(context.Background(), faultBound)
		defer rcancel()
		recap2, err := deploy.Resume(rctx, nil, recap.Run, deployOpts(s, op, "", &recorder{}))
		if err != nil || recap2.Status != workflows.StatusDone {
			t.Fatalf("resume after the kills: %v, want done", err)
		}
	default:
		t.Fatalf("deploy across broker kills: %v, want done or a step error naming host and step", fmt.Sprint(err))
	}
	wantDeployed(t, s, "1.1")
	st, err := op.Store.Load(context.Background(), recap.Run)
	if err != nil || st.Status != workflows.StatusDone {
		t.Errorf("recorded run after it all: %v %v, want done", st, err)
	}
}
