package workflows

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// waitingCanary is a deploy run whose canary waits for a decision.
func waitingCanary() *RunState {
	st := deployState()
	st.Canary = &CanaryState{Hosts: []string{"web1"}, Bake: time.Second, Interval: time.Second, Promote: PromoteManual, Phase: CanaryWaiting}
	st.Status = StatusWaiting
	return st
}

// interleaved is an Updater that, the first time it hands a state to the
// caller, first lets another operator's decision land in the store: the
// moment between a read and a write that a plain Load and Save loses.
type interleaved struct {
	Store
	inner Updater
	other func()
	once  sync.Once
}

func (s *interleaved) Update(ctx context.Context, id string, fn func(*RunState) error) error {
	return s.inner.Update(ctx, id, func(st *RunState) error {
		s.once.Do(s.other)
		return fn(st)
	})
}

// TestDecisionRecordedOnce: bob aborts a waiting canary while alice's
// promotion is between its read and its write of the run state. Alice
// must be told that bob decided, and bob's abort must stay stored. Run
// through a plain Load and Save (the store's Update hidden, as deploy's
// Decide did before), both were told their decision was recorded and
// alice's write replaced bob's abort.
func TestDecisionRecordedOnce(t *testing.T) {
	ctx := context.Background()
	alice, bob := testSigner(t), testSigner(t)
	srv := startBroker(t, -1, t.TempDir())
	aliceStore, _ := kvStoreOn(t, srv.ClientURL(), KVConfig{Signer: alice, ResumeKeys: []ssh.PublicKey{bob.PublicKey()}})
	bobStore, _ := kvStoreOn(t, srv.ClientURL(), KVConfig{Signer: bob, ResumeKeys: []ssh.PublicKey{alice.PublicKey()}})
	st := waitingCanary()
	if err := aliceStore.Save(ctx, st); err != nil {
		t.Fatal(err)
	}
	racing := &interleaved{Store: aliceStore, inner: aliceStore, other: func() {
		if _, err := RecordDecision(ctx, bobStore, st.ID, DecisionAbort, "bob@bastion", time.Now()); err != nil {
			t.Errorf("bob's abort: %v", err)
		}
	}}
	_, err := RecordDecision(ctx, racing, st.ID, DecisionPromote, "alice@bastion", time.Now())
	if !errors.Is(err, ErrNotWaiting) || !strings.Contains(err.Error(), "bob@bastion already decided abort") {
		t.Fatalf("alice's promotion raced bob's abort: want ErrNotWaiting naming bob, found %v", err)
	}
	got, err := aliceStore.Load(ctx, st.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Canary.Decision != DecisionAbort || got.Canary.DecidedBy != "bob@bastion" {
		t.Fatalf("want bob's abort stored, found %s by %s", got.Canary.Decision, got.Canary.DecidedBy)
	}
}

// TestConcurrentDecisionsOneWins: eight operators decide the same canary
// at the same moment; exactly one is told it was recorded, the others are
// told who decided, and the stored decision is the winner's.
func TestConcurrentDecisionsOneWins(t *testing.T) {
	for name, mk := range stores(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			s := mk(t)
			st := waitingCanary()
			if err := s.Save(ctx, st); err != nil {
				t.Fatal(err)
			}
			var (
				wg     sync.WaitGroup
				mu     sync.Mutex
				winner []string
			)
			for i := range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					by := "op" + string(rune('a'+i))
					decision := []string{DecisionPromote, DecisionAbort}[i%2]
					_, err := RecordDecision(ctx, s, st.ID, decision, by, time.Now())
					switch {
					case err == nil:
						mu.Lock()
						winner = append(winner, by+" "+decision)
						mu.Unlock()
					case !errors.Is(err, ErrNotWaiting):
						t.Errorf("%s: want ErrNotWaiting, found %v", by, err)
					}
				}()
			}
			wg.Wait()
			if len(winner) != 1 {
				t.Fatalf("want exactly one decision recorded, found %v", winner)
			}
			got, err := s.Load(ctx, st.ID)
			if err != nil {
				t.Fatal(err)
			}
			if stored := got.Canary.DecidedBy + " " + got.Canary.Decision; stored != winner[0] {
				t.Fatalf("the winner was %s, the store holds %s", winner[0], stored)
			}
		})
	}
}
