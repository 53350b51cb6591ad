package service

// systemd cannot run as PID 1 in this test environment (no init, no
// D-Bus), so the systemd backend is tested through its argument vectors
// and the parsing of systemctl show output saved in testdata/systemctl.
// The state-wait logic it shares with runit is tested against a real
// runsvdir in runit_test.go.

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/signetbus/signet/internal/command"
	"github.com/signetbus/signet/plugins"
)

func fixture(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "systemctl", name+".txt"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestParseShow(t *testing.T) {
	enter := time.Date(2024, 5, 14, 10, 21, 33, 0, time.UTC)
	for _, tc := range []struct {
		fixture string
		want    Status
		wantErr string
	}{
		{fixture: "running", want: Status{State: StateRunning, Active: true, PID: 1234, Since: enter, Detail: "active (running)"}},
		{fixture: "inactive", want: Status{State: StateStopped, Detail: "inactive (dead)"}},
		{fixture: "failed", want: Status{State: StateFailed, Detail: "failed (failed), exit 1",
			Hint: "the service keeps exiting; see journalctl -u for its output"}},
		{fixture: "activating", want: Status{State: StateStarting, PID: 4321, Detail: "activating (start)"}},
		{fixture: "auto-restart", want: Status{State: StateRestarting, Detail: "activating (auto-restart), exit 1",
			Hint: "the service keeps exiting; see journalctl -u for its output"}},
		{fixture: "oneshot-exited", want: Status{State: StateRunning, Active: true, Since: time.Unix(1715682093, 0), Detail: "active (exited)"}},
		{fixture: "masked", want: Status{State: StateStopped, Detail: "inactive (dead), masked"}},
		{fixture: "not-found", wantErr: "service: no such service: systemd has no such unit (LoadState=not-found)"},
	} {
		t.Run(tc.fixture, func(t *testing.T) {
			got, err := parseShow(fixture(t, tc.fixture))
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr || !errors.Is(err, ErrNotFound) {
					t.Fatalf("err = %v, want %s", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !got.Since.Equal(tc.want.Since) {
				t.Errorf("since = %v, want %v", got.Since, tc.want.Since)
			}
			got.Since, tc.want.Since = time.Time{}, time.Time{}
			if got != tc.want {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestParseShowRejects(t *testing.T) {
	for _, tc := range []struct{ name, out, wantErr string }{
		{"empty", "", "want LoadState and ActiveState"},
		{"not key=value", "ActiveState active\n", "want KEY=value lines"},
		{"bad pid", "LoadState=loaded\nActiveState=active\nMainPID=x\n", `MainPID: want a process id, got "x"`},
		{"load error", "LoadState=bad-setting\nActiveState=inactive\n", "unit cannot be loaded (LoadState=bad-setting)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := parseShow(tc.out); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

func TestParseSystemdTime(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Time
	}{
		{"Tue 2024-05-14 10:21:33 UTC", time.Date(2024, 5, 14, 10, 21, 33, 0, time.UTC)},
		{"@1715682093", time.Unix(1715682093, 0)},
		{"", time.Time{}},
		{"n/a", time.Time{}},
		{"Tue 2024-05-14 12:21:33 CEST", time.Time{}}, // not UTC: unknown, rather than a wrong time
		{"@x", time.Time{}},
	} {
		if got := parseSystemdTime(tc.in); !got.Equal(tc.want) {
			t.Errorf("parseSystemdTime(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

// fakeSystemctl answers systemctl show from fixtures, switching to the
// next fixture after each start, stop, restart or reload, and records
// every command it is asked to run.
type fakeSystemctl struct {
	t     *testing.T
	show  []string // fixture names: before the first act, after it, ...
	acts  int
	specs []command.Spec
}

func (f *fakeSystemctl) run(ctx context.Context, spec command.Spec) (*command.Result, error) {
	f.specs = append(f.specs, spec)
	if spec.Argv[1] == "show" {
		return &command.Result{Argv: spec.Argv, Stdout: fixture(f.t, f.show[min(f.acts, len(f.show)-1)])}, nil
	}
	f.acts++
	return &command.Result{Argv: spec.Argv}, nil
}

// TestSystemdRun runs the plugin with the systemd backend against a
// fake systemctl and checks the exact commands it runs.
func TestSystemdRun(t *testing.T) {
	show := []string{"systemctl", "show", "--property=ActiveState,SubState,MainPID,LoadState,ActiveEnterTimestamp,ExecMainCode,ExecMainStatus", "--", "middleware"}
	for _, tc := range []struct {
		action    string
		show      []string
		wantArgvs [][]string
		wantState string
		changed   bool
		wantErr   string
	}{
		{action: "status", show: []string{"running"}, wantArgvs: [][]string{show}, wantState: StateRunning},
		{action: "start", show: []string{"inactive", "running"}, changed: true, wantState: StateRunning,
			wantArgvs: [][]string{show, {"systemctl", "start", "--", "middleware"}, show}},
		{action: "start", show: []string{"running"}, wantState: StateRunning, wantArgvs: [][]string{show, show}},
		{action: "stop", show: []string{"running", "inactive"}, changed: true, wantState: StateStopped,
			wantArgvs: [][]string{show, {"systemctl", "stop", "--", "middleware"}, show}},
		{action: "stop", show: []string{"failed"}, wantState: StateFailed, wantArgvs: [][]string{show}},
		{action: "reload", show: []string{"running", "running"}, changed: true, wantState: StateRunning,
			wantArgvs: [][]string{show, {"systemctl", "reload", "--", "middleware"}, show}},
		{action: "restart", show: []string{"inactive", "running"}, changed: true, wantState: StateRunning,
			wantArgvs: [][]string{show, {"systemctl", "restart", "--", "middleware"}, show}},
		{action: "start", show: []string{"not-found"}, wantArgvs: [][]string{show},
			wantErr: "middleware: systemctl show middleware: service: no such service: systemd has no such unit (LoadState=not-found)"},
	} {
		t.Run(tc.action+" from "+tc.show[0], func(t *testing.T) {
			f := &fakeSystemctl{t: t, show: tc.show}
			s, err := newService(Config{Backend: BackendSystemd}, "", f.run)
			if err != nil {
				t.Fatal(err)
			}
			// The fixtures' start time is long past: running counts at once.
			res, err := s.Run(context.Background(), &plugins.Request{Action: tc.action, Params: plugins.Params{"service": "middleware", "timeout": "5s"}})
			var argvs [][]string
			for _, sp := range f.specs {
				argvs = append(argvs, sp.Argv)
				if sp.Argv[1] == "show" && !slices.Equal(sp.ExtraEnv, []string{"TZ=UTC"}) {
					t.Errorf("systemctl show env = %v, want TZ=UTC", sp.ExtraEnv)
				}
			}
			if !slices.EqualFunc(argvs, tc.wantArgvs, slices.Equal) {
				t.Errorf("argvs = %q\nwant   %q", argvs, tc.wantArgvs)
			}
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr || !errors.Is(err, ErrNotFound) {
					t.Fatalf("err = %v, want %s", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if res.Changed != tc.changed || res.Data["state"] != tc.wantState || res.Data["backend"] != BackendSystemd {
				t.Errorf("result = %+v", res)
			}
		})
	}
}

// TestSystemdStartFails checks that a failed systemctl start reports
// systemctl's message and the state it left behind.
func TestSystemdStartFails(t *testing.T) {
	calls := 0
	run := func(ctx context.Context, spec command.Spec) (*command.Result, error) {
		calls++
		if spec.Argv[1] == "show" {
			return &command.Result{Stdout: fixture(t, "failed")}, nil
		}
		res := &command.Result{Argv: spec.Argv, ExitCode: 1,
			Stderr: "Job for middleware.service failed because the control process exited with error code.\nSee \"systemctl status middleware.service\" and \"journalctl -xeu middleware.service\" for details."}
		return res, &command.ExitError{Result: res}
	}
	s, err := newService(Config{Backend: BackendSystemd}, "", run)
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Run(context.Background(), &plugins.Request{Action: "start", Params: plugins.Params{"service": "middleware"}})
	want := `middleware: systemctl start middleware: systemctl exited with status 1: See "systemctl status middleware.service" and "journalctl -xeu middleware.service" for details. (found failed (failed (failed), exit 1))`
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v\nwant %s", err, want)
	}
	var ee *command.ExitError
	if !errors.As(err, &ee) {
		t.Error("the command's exit error is not wrapped")
	}
}
