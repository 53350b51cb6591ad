package service

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/signetbus/signet/plugins"
)

// fakeBackend replays a script of states against a fake clock: each
// status call returns the next state (the last one repeats), and act
// records the verbs. It lets the wait logic, which every backend shares,
// be tested once and without sleeping.
type fakeBackend struct {
	clock    *fakeClock
	script   []func(now time.Time) (Status, error)
	afterAct []func(now time.Time) (Status, error) // replaces script once act runs, when set
	calls    int
	verbs    []string
	actErr   error
}

func (f *fakeBackend) name() string { return "fake" }

func (f *fakeBackend) status(ctx context.Context, svc string) (Status, error) {
	if err := ctx.Err(); err != nil {
		return Status{}, err
	}
	i := min(f.calls, len(f.script)-1)
	f.calls++
	return f.script[i](f.clock.now)
}

func (f *fakeBackend) act(ctx context.Context, verb, svc string) error {
	f.verbs = append(f.verbs, verb)
	if f.afterAct != nil {
		f.script, f.calls = f.afterAct, 0
	}
	return f.actErr
}

type fakeClock struct{ now time.Time }

func (c *fakeClock) Now() time.Time { return c.now }

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.now = c.now.Add(d)
	return nil
}

// Script steps.
func stopped(now time.Time) (Status, error) { return Status{State: StateStopped, Detail: "down"}, nil }

func runningSince(pid int, since time.Duration) func(time.Time) (Status, error) {
	return func(now time.Time) (Status, error) {
		return Status{State: StateRunning, Active: true, PID: pid, Since: now.Add(-since)}, nil
	}
}

// runningFrom is a process started at a fixed time, so its uptime grows
// with the fake clock.
func runningFrom(pid int, start time.Time) func(time.Time) (Status, error) {
	return func(time.Time) (Status, error) {
		return Status{State: StateRunning, Active: true, PID: pid, Since: start}, nil
	}
}

func restarting(now time.Time) (Status, error) {
	return Status{State: StateRestarting, Detail: "activating (auto-restart), exit 1", Hint: "it keeps exiting"}, nil
}

func failing(err error) func(time.Time) (Status, error) {
	return func(time.Time) (Status, error) { return Status{}, err }
}

func newFakeService(f *fakeBackend) *Service {
	return &Service{backend: f, minUptime: time.Second, now: f.clock.Now, sleep: f.clock.Sleep}
}

var t0 = time.Date(2024, 5, 14, 10, 0, 0, 0, time.UTC)

func TestWait(t *testing.T) {
	for _, tc := range []struct {
		name    string
		script  func(c *fakeClock) []func(time.Time) (Status, error)
		want    target
		timeout time.Duration
		// wantPID is the pid reached; wantErr the error's text, when it fails.
		wantPID int
		wantErr string
	}{
		{name: "running at once", want: target{running: true}, timeout: 5 * time.Second, wantPID: 7,
			script: func(c *fakeClock) []func(time.Time) (Status, error) {
				return []func(time.Time) (Status, error){runningSince(7, time.Hour)}
			}},
		{name: "stopped, then starting, then running long enough", want: target{running: true}, timeout: 5 * time.Second, wantPID: 8,
			script: func(c *fakeClock) []func(time.Time) (Status, error) {
				return []func(time.Time) (Status, error){stopped, stopped, runningFrom(8, c.now.Add(100*time.Millisecond))}
			}},
		{name: "uptime unknown counts as settled", want: target{running: true}, timeout: time.Second, wantPID: 9,
			script: func(c *fakeClock) []func(time.Time) (Status, error) {
				return []func(time.Time) (Status, error){func(time.Time) (Status, error) {
					return Status{State: StateRunning, Active: true, PID: 9}, nil
				}}
			}},
		{name: "never up", want: target{running: true}, timeout: 30 * time.Second,
			wantErr: "middleware: wanted running, found restarting (activating (auto-restart), exit 1) after 30s (it keeps exiting)",
			script: func(c *fakeClock) []func(time.Time) (Status, error) {
				return []func(time.Time) (Status, error){restarting}
			}},
		{name: "crash loop caught up for 0s", want: target{running: true}, timeout: 3 * time.Second,
			wantErr: "middleware: wanted running, found running (pid 11, up 0s): up 0s, less than the 1s it must stay up after 3s",
			script: func(c *fakeClock) []func(time.Time) (Status, error) {
				return []func(time.Time) (Status, error){runningSince(11, 0)}
			}},
		{name: "restart waits for a new process", want: target{running: true, notPID: 5}, timeout: 5 * time.Second, wantPID: 6,
			script: func(c *fakeClock) []func(time.Time) (Status, error) {
				return []func(time.Time) (Status, error){runningSince(5, time.Hour), runningSince(5, time.Hour), runningSince(6, 2*time.Second)}
			}},
		{name: "restart that never happens", want: target{running: true, notPID: 5}, timeout: 2 * time.Second,
			wantErr: "middleware: wanted running, found running (pid 5, up 1h0m0s): still the process from before the restart (pid 5) after 2s",
			script: func(c *fakeClock) []func(time.Time) (Status, error) {
				return []func(time.Time) (Status, error){runningSince(5, time.Hour)}
			}},
		{name: "stop reached", want: target{}, timeout: 5 * time.Second,
			script: func(c *fakeClock) []func(time.Time) (Status, error) {
				return []func(time.Time) (Status, error){runningSince(4, time.Hour), stopped}
			}},
		{name: "failed counts as stopped", want: target{}, timeout: 5 * time.Second,
			script: func(c *fakeClock) []func(time.Time) (Status, error) {
				return []func(time.Time) (Status, error){func(time.Time) (Status, error) { return Status{State: StateFailed}, nil }}
			}},
		{name: "stop that hangs", want: target{}, timeout: 10 * time.Second,
			wantErr: "middleware: wanted stopped, found stopping (pid 4, run, want down) after 10s",
			script: func(c *fakeClock) []func(time.Time) (Status, error) {
				return []func(time.Time) (Status, error){func(time.Time) (Status, error) {
					return Status{State: StateStopping, Active: true, PID: 4, Detail: "run, want down"}, nil
				}}
			}},
		{name: "vanished service ends the wait", want: target{running: true}, timeout: 10 * time.Second,
			wantErr: "middleware: service: no such service: gone",
			script: func(c *fakeClock) []func(time.Time) (Status, error) {
				return []func(time.Time) (Status, error){failing(fmt.Errorf("%w: gone", ErrNotFound))}
			}},
		{name: "status never readable", want: target{running: true}, timeout: time.Second,
			wantErr: "middleware: wanted running, found unknown after 1s: sv status middleware: boom",
			script: func(c *fakeClock) []func(time.Time) (Status, error) {
				return []func(time.Time) (Status, error){failing(errors.New("sv status middleware: boom"))}
			}},
		{name: "a read error after a good read keeps the last state", want: target{running: true}, timeout: time.Second,
			wantErr: "middleware: wanted running, found stopped (down) after 1s",
			script: func(c *fakeClock) []func(time.Time) (Status, error) {
				return []func(time.Time) (Status, error){stopped, failing(errors.New("boom"))}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &fakeClock{now: t0}
			f := &fakeBackend{clock: c, script: tc.script(c)}
			st, err := newFakeService(f).wait(context.Background(), "middleware", tc.want, tc.timeout)
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("err = %v\nwant %s", err, tc.wantErr)
				}
				if elapsed := c.now.Sub(t0); elapsed > tc.timeout {
					t.Errorf("waited %s, more than the timeout %s", elapsed, tc.timeout)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if st.PID != tc.wantPID {
				t.Errorf("pid = %d, want %d", st.PID, tc.wantPID)
			}
		})
	}
}

// TestWaitBackoff checks that polling starts fast, backs off, and stays
// at most maxPoll apart.
func TestWaitBackoff(t *testing.T) {
	c := &fakeClock{now: t0}
	var times []time.Time
	f := &fakeBackend{clock: c, script: []func(time.Time) (Status, error){func(now time.Time) (Status, error) {
		times = append(times, now)
		return Status{State: StateStopped}, nil
	}}}
	_, err := newFakeService(f).wait(context.Background(), "web", target{running: true}, 3*time.Second)
	var we *WaitError
	if !errors.As(err, &we) || we.After != 3*time.Second || we.Found.State != StateStopped {
		t.Fatalf("err = %#v", err)
	}
	var gaps []time.Duration
	for i := 1; i < len(times); i++ {
		gaps = append(gaps, times[i].Sub(times[i-1]))
	}
	if gaps[0] != firstPoll || gaps[1] != 2*firstPoll {
		t.Errorf("first gaps = %v, want %v then %v", gaps[:2], firstPoll, 2*firstPoll)
	}
	for _, g := range gaps {
		if g > maxPoll {
			t.Errorf("gap %v above %v", g, maxPoll)
		}
	}
	if !times[len(times)-1].Equal(t0.Add(3 * time.Second)) {
		t.Errorf("last poll at %v, want exactly at the timeout", times[len(times)-1].Sub(t0))
	}
}

func TestWaitContextEnds(t *testing.T) {
	c := &fakeClock{now: t0}
	ctx, cancel := context.WithCancel(context.Background())
	f := &fakeBackend{clock: c, script: []func(time.Time) (Status, error){func(time.Time) (Status, error) {
		cancel()
		return Status{State: StateStarting, Detail: "down, want up"}, nil
	}}}
	_, err := newFakeService(f).wait(ctx, "web", target{running: true}, time.Minute)
	var we *WaitError
	if !errors.As(err, &we) || !errors.Is(err, context.Canceled) || we.Found.State != StateStarting {
		t.Fatalf("err = %v, want a WaitError wrapping context.Canceled with the state found", err)
	}
	if !strings.Contains(err.Error(), "web: wanted running, found starting (down, want up) after 0s: context canceled") {
		t.Errorf("message = %q", err)
	}
}

// TestRunActions drives Run's decisions (act or not, what to wait for,
// changed) against the fake backend.
func TestRunActions(t *testing.T) {
	for _, tc := range []struct {
		name, action string
		before       []func(time.Time) (Status, error)
		after        []func(time.Time) (Status, error)
		wantVerbs    string
		wantChanged  bool
		wantState    string
		wantErr      string
	}{
		{name: "status", action: "status", before: steps(runningSince(3, time.Hour)),
			wantState: StateRunning},
		{name: "start a stopped service", action: "start", before: steps(stopped), after: steps(stopped, runningSince(3, 2*time.Second)),
			wantVerbs: "start", wantChanged: true, wantState: StateRunning},
		{name: "start a running service", action: "start", before: steps(runningSince(3, time.Hour)),
			wantState: StateRunning},
		{name: "start a stopping service", action: "start", before: steps(func(time.Time) (Status, error) {
			return Status{State: StateStopping, Active: true, PID: 3}, nil
		}), after: steps(runningSince(3, time.Hour)),
			wantVerbs: "start", wantChanged: true, wantState: StateRunning},
		{name: "stop a running service", action: "stop", before: steps(runningSince(3, time.Hour)), after: steps(stopped),
			wantVerbs: "stop", wantChanged: true, wantState: StateStopped},
		{name: "stop a stopped service", action: "stop", before: steps(stopped),
			wantState: StateStopped},
		{name: "restart a running service", action: "restart", before: steps(runningSince(3, time.Hour)),
			after:     steps(runningSince(3, time.Hour), runningSince(4, 5*time.Second)),
			wantVerbs: "restart", wantChanged: true, wantState: StateRunning},
		{name: "restart a stopped service starts it", action: "restart", before: steps(stopped), after: steps(runningSince(4, 5*time.Second)),
			wantVerbs: "restart", wantChanged: true, wantState: StateRunning},
		{name: "reload", action: "reload", before: steps(runningSince(3, time.Hour)), after: steps(runningSince(3, time.Hour)),
			wantVerbs: "reload", wantChanged: true, wantState: StateRunning},
		{name: "reload a stopped service", action: "reload", before: steps(stopped),
			wantErr: "middleware: cannot reload a service that is not running (found stopped (down)); start it instead"},
		{name: "start fails to come up", action: "start", before: steps(stopped), after: steps(restarting),
			wantVerbs: "start", wantErr: "middleware: wanted running, found restarting (activating (auto-restart), exit 1) after 2s (it keeps exiting)"},
		{name: "unknown service", action: "start", before: steps(failing(fmt.Errorf("%w: systemd has no such unit", ErrNotFound))),
			wantErr: "middleware: service: no such service: systemd has no such unit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &fakeClock{now: t0}
			f := &fakeBackend{clock: c, script: tc.before, afterAct: tc.after}
			res, err := newFakeService(f).Run(context.Background(), &plugins.Request{
				Action: tc.action, Params: plugins.Params{"service": "middleware", "timeout": "2s"}})
			if got := strings.Join(f.verbs, ","); got != tc.wantVerbs {
				t.Errorf("verbs = %q, want %q", got, tc.wantVerbs)
			}
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("err = %v\nwant %s", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if res.Changed != tc.wantChanged || res.Data["state"] != tc.wantState || res.Data["service"] != "middleware" {
				t.Errorf("result = %+v", res)
			}
		})
	}
}

func steps(s ...func(time.Time) (Status, error)) []func(time.Time) (Status, error) { return s }

func TestRunActErrorReportsState(t *testing.T) {
	c := &fakeClock{now: t0}
	f := &fakeBackend{clock: c, script: steps(stopped), afterAct: steps(func(time.Time) (Status, error) {
		return Status{State: StateFailed, Detail: "failed (failed), exit 1"}, nil
	}), actErr: errors.New("systemctl start middleware: systemctl exited with status 1: Job for middleware.service failed")}
	_, err := newFakeService(f).Run(context.Background(), &plugins.Request{Action: "start", Params: plugins.Params{"service": "middleware"}})
	want := "middleware: systemctl start middleware: systemctl exited with status 1: Job for middleware.service failed (found failed (failed (failed), exit 1))"
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v\nwant %s", err, want)
	}
}

func TestResult(t *testing.T) {
	s := &Service{backend: systemd{}}
	res := s.result("middleware", Status{State: StateRunning, Active: true, PID: 1234, Since: t0, Detail: "active (running)"}, true)
	if res.Summary != "middleware running (pid 1234)" || !res.Changed {
		t.Errorf("summary = %q changed = %v", res.Summary, res.Changed)
	}
	want := map[string]any{"service": "middleware", "state": "running", "active": true, "pid": 1234,
		"since": "2024-05-14T10:00:00Z", "detail": "active (running)", "backend": "systemd"}
	if fmt.Sprint(res.Data) != fmt.Sprint(want) {
		t.Errorf("data = %v\nwant %v", res.Data, want)
	}
	res = s.result("middleware", Status{State: StateStopped, Detail: "inactive (dead)"}, false)
	if res.Summary != "middleware stopped" || res.Data["pid"] != 0 || res.Data["active"] != false {
		t.Errorf("stopped result = %+v", res)
	}
	if _, ok := res.Data["since"]; ok {
		t.Error("since present without a time")
	}
}
