package workflows

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ErrConflict is returned by an Updater whose stored state changed
// between its read and its write more often than it retries.
var ErrConflict = errors.New("workflows: the run state changed while it was being updated")

// Updater is a Store that can change a stored run state atomically: fn
// gets the state as stored, and its change is written only if nobody
// wrote the run in between; otherwise the state is read again and fn is
// called again. Two operators deciding a canary at once need it: with a
// plain Load and Save, both are told their decision was recorded and the
// later write silently wins.
type Updater interface {
	Update(ctx context.Context, id string, fn func(*RunState) error) error
}

// updateAttempts bounds how often an Updater reads again after a conflict.
const updateAttempts = 8

// RecordDecision records a canary decision (promote or abort) on a
// stored run, through a compare-and-set when the store is an Updater. Of
// two decisions recorded at once, exactly one is kept; the other fails
// with ErrNotWaiting, naming who decided.
func RecordDecision(ctx context.Context, s Store, id, decision, by string, now time.Time) (*RunState, error) {
	var got *RunState
	decide := func(st *RunState) error {
		if err := Decide(st, decision, by, now); err != nil {
			return err
		}
		got = st
		return nil
	}
	if u, ok := s.(Updater); ok {
		if err := u.Update(ctx, id, decide); err != nil {
			return nil, err
		}
		return got, nil
	}
	st, err := s.Load(ctx, id)
	if err != nil {
		return nil, err
	}
	if err := decide(st); err != nil {
		return nil, err
	}
	if err := s.Save(ctx, st); err != nil {
		return nil, fmt.Errorf("save run %s: %w", id, err)
	}
	return st, nil
}
