package service

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Polling of the state after an action: the first check comes at once,
// then after firstPoll, doubling up to maxPoll.
const (
	firstPoll = 50 * time.Millisecond
	maxPoll   = 500 * time.Millisecond
)

// DefaultMinUptime is how long a service must have been up before start,
// restart and reload count it as running, so that one which starts and
// dies at once (and is restarted by its supervisor) is not reported as
// running because a poll caught it in its first moment.
const DefaultMinUptime = time.Second

// target is the state an action waits for.
type target struct {
	running bool // running; otherwise stopped
	// notPID, for restart, is the process that was running before: the
	// service must run with another one. 0 means any.
	notPID int
}

func (t target) String() string {
	if t.running {
		return StateRunning
	}
	return StateStopped
}

// reached reports whether st is the target state, and when it is not but
// the state alone does not say why, the reason.
func (t target) reached(st Status, now time.Time, minUptime time.Duration) (bool, string) {
	if !t.running {
		return st.stopped(), ""
	}
	if st.State != StateRunning {
		return false, ""
	}
	if t.notPID != 0 && st.PID == t.notPID {
		return false, fmt.Sprintf("still the process from before the restart (pid %d)", st.PID)
	}
	if !st.Since.IsZero() {
		if up := now.Sub(st.Since); up < minUptime {
			return false, fmt.Sprintf("up %s, less than the %s it must stay up", up.Truncate(time.Second), minUptime)
		}
	}
	return true, ""
}

// WaitError is returned when a service did not reach the wanted state in
// time. Its message says what was wanted and what was found:
//
//	middleware: wanted running, found restarting (activating (auto-restart), exit 1) after 30s
type WaitError struct {
	// Service is the service name.
	Service string
	// Want is "running" or "stopped".
	Want string
	// Found is the last state read; its State is "unknown" when no read
	// succeeded.
	Found Status
	// After is how long the plugin waited.
	After time.Duration
	// found is Found rendered when it was read, plus why it is not the
	// wanted state when the state alone does not say.
	found string
	// Err is why waiting stopped early (the action's deadline), or the
	// last error reading the state when no read succeeded; nil on timeout.
	Err error
}

func (e *WaitError) Error() string {
	msg := fmt.Sprintf("%s: wanted %s, found %s after %s", e.Service, e.Want, e.found, e.After.Round(time.Second))
	if e.Found.Hint != "" {
		msg += " (" + e.Found.Hint + ")"
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *WaitError) Unwrap() error { return e.Err }

// wait polls the backend until the service is in the target state, the
// timeout passes or ctx ends. It returns the state reached, or a
// *WaitError reporting the last state found. A service that does not
// exist ends the wait at once.
func (s *Service) wait(ctx context.Context, service string, t target, timeout time.Duration) (Status, error) {
	start := s.now()
	deadline := start.Add(timeout)
	delay := firstPoll
	werr := &WaitError{Service: service, Want: t.String(), Found: Status{State: StateUnknown}, found: StateUnknown}
	seen := false // a read succeeded
	for {
		st, err := s.backend.status(ctx, service)
		now := s.now()
		switch {
		case errors.Is(err, ErrNotFound):
			return Status{}, fmt.Errorf("%s: %w", service, err)
		case err != nil:
			if !seen {
				werr.Err = err
			}
		default:
			ok, why := t.reached(st, now, s.minUptime)
			if ok {
				return st, nil
			}
			seen = true
			werr.Found, werr.found, werr.Err = st, st.describe(now), nil
			if why != "" {
				werr.found += ": " + why
			}
		}
		left := deadline.Sub(now)
		if left <= 0 {
			werr.After = now.Sub(start)
			return werr.Found, werr
		}
		if err := s.sleep(ctx, min(delay, left)); err != nil {
			werr.After = s.now().Sub(start)
			werr.Err = err
			return werr.Found, werr
		}
		delay = min(2*delay, maxPoll)
	}
}

// sleepCtx waits d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
