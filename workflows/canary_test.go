package workflows

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// TestCanaryDecisionOnlyFromTrustedKeys: a waiting canary acts only on a
// decision signed by a key it trusts (its own or resume_keys). A broker
// user with another key who writes "abort" into the run's record is
// ignored; the canary keeps waiting and the run's own record is written
// back when the client ends; a trusted operator's promotion then
// finishes the run.
func TestCanaryDecisionOnlyFromTrustedKeys(t *testing.T) {
	ctx := context.Background()
	alice, bob, mallory := testSigner(t), testSigner(t), testSigner(t)
	srv := startBroker(t, -1, t.TempDir())
	aliceStore, _ := kvStoreOn(t, srv.ClientURL(), KVConfig{Signer: alice, ResumeKeys: []ssh.PublicKey{bob.PublicKey()}})
	malloryStore, _ := kvStoreOn(t, srv.ClientURL(), KVConfig{Signer: mallory, ResumeKeys: []ssh.PublicKey{alice.PublicKey()}})
	bobStore, _ := kvStoreOn(t, srv.ClientURL(), KVConfig{Signer: bob, ResumeKeys: []ssh.PublicKey{alice.PublicKey()}})

	st := deployState()
	st.Canary = &CanaryState{Hosts: []string{"web1"}, Bake: time.Second, Interval: 100 * time.Millisecond, Promote: PromoteManual, Phase: CanaryDeploying}
	caller := &hookCaller{}
	job := func(st *RunState) *Job {
		return &Job{Workflow: threeSteps(), State: st, DecisionPoll: 20 * time.Millisecond}
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		_, err := (&Engine{Caller: caller, Store: aliceStore}).Run(runCtx, nil, job(st))
		done <- err
	}()
	var rec *RunState
	deadline := time.Now().Add(30 * time.Second)
	for {
		var err error
		if rec, err = malloryStore.Load(ctx, st.ID); err == nil && rec.Canary.Phase == CanaryWaiting {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the canary never waited: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := Decide(rec, DecisionAbort, "mallory", time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := malloryStore.Save(ctx, rec); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // many polls of the record
	select {
	case err := <-done:
		t.Fatalf("the run acted on an untrusted decision: %v", err)
	default:
	}
	caller.mu.Lock()
	early := slices.ContainsFunc(caller.calls, func(c string) bool { return strings.HasPrefix(c, "web2 ") })
	caller.mu.Unlock()
	if early {
		t.Fatal("web2 was deployed while the canary waited")
	}
	cancel()
	if err := <-done; !errors.As(err, new(*InterruptedError)) {
		t.Fatalf("want the run interrupted, found %v", err)
	}
	rec, err := bobStore.Load(ctx, st.ID)
	if err != nil {
		t.Fatalf("the run's own record is not back: %v", err)
	}
	if rec.Canary.Phase != CanaryWaiting || rec.Canary.Decision != "" {
		t.Fatalf("want the canary still waiting, undecided, found %+v", rec.Canary)
	}
	if err := Decide(rec, DecisionPromote, "bob", time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := bobStore.Save(ctx, rec); err != nil {
		t.Fatal(err)
	}
	resumed, err := aliceStore.Load(ctx, st.ID)
	if err != nil {
		t.Fatal(err)
	}
	recap, err := (&Engine{Caller: caller, Store: aliceStore}).Run(ctx, nil, job(resumed))
	if err != nil || recap.Status != StatusDone {
		t.Fatalf("promoted by bob: want done, found %v", err)
	}
	if !slices.ContainsFunc(caller.calls, func(c string) bool { return strings.HasPrefix(c, "web2 ") }) {
		t.Fatalf("web2 was never deployed: %v", caller.calls)
	}
	final, _ := aliceStore.Load(ctx, st.ID)
	if final.Canary.Phase != CanaryPromoted || final.Canary.DecidedBy != "bob" {
		t.Fatalf("want promoted by bob, found %+v", final.Canary)
	}
}
