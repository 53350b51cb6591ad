package service

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/signetbus/signet/internal/command"
	"github.com/signetbus/signet/plugins"
)

func TestParseSvStatus(t *testing.T) {
	now := time.Date(2024, 5, 14, 10, 0, 0, 0, time.UTC)
	ago := func(s int) time.Time { return now.Add(-time.Duration(s) * time.Second) }
	startHint := "runsv starts it again every second; if it stays down, ./run exits at once or cannot be executed: see the service's log"
	for _, tc := range []struct {
		name, out string
		want      Status
		wantErr   string
	}{
		{"running", "run: web: (pid 26221) 5s\n", Status{State: StateRunning, Active: true, PID: 26221, Since: ago(5), Detail: "run"}, ""},
		{"running with log", "run: web: (pid 123) 75s; run: log: (pid 124) 75s\n", Status{State: StateRunning, Active: true, PID: 123, Since: ago(75), Detail: "run"}, ""},
		{"running normally down", "run: web: (pid 9) 0s, normally down\n", Status{State: StateRunning, Active: true, PID: 9, Since: now, Detail: "run, normally down"}, ""},
		{"stopping", "run: web: (pid 26221) 1s, want down\n", Status{State: StateStopping, Active: true, PID: 26221, Since: ago(1), Detail: "run, want down"}, ""},
		{"got TERM", "run: web: (pid 7) 3s, normally up, got TERM\n", Status{State: StateStopping, Active: true, PID: 7, Since: ago(3), Detail: "run, normally up, got TERM"}, ""},
		{"stopped normally up", "down: web: 0s, normally up\n", Status{State: StateStopped, Since: now, Detail: "down, normally up"}, ""},
		{"stopped", "down: web: 12s\n", Status{State: StateStopped, Since: ago(12), Detail: "down"}, ""},
		{"crash loop", "down: bad: 1s, normally up, want up\n", Status{State: StateStarting, Since: ago(1), Detail: "down, normally up, want up", Hint: startHint}, ""},
		{"finish", "finish: web: (pid 130) 0s, normally up\n", Status{State: StateFinishing, Since: now, Detail: "finish script pid 130, normally up"}, ""},
		{"colon in name", "run: a:b: (pid 5) 2s\n", Status{State: StateRunning, Active: true, PID: 5, Since: ago(2), Detail: "run"}, ""},
		{"no such service", "fail: web: unable to change to service directory: file does not exist\n", Status{}, "service: no such service: unable to change to service directory"},
		{"not supervised", "warning: web: unable to open supervise/ok: file does not exist\n", Status{}, "runsv is not supervising web (unable to open supervise/ok: file does not exist)"},
		{"runsv gone", "fail: web: runsv not running\n", Status{}, "runsv is not supervising web (runsv not running)"},
		{"other name", "run: other: (pid 5) 2s\n", Status{}, `want "run: web: ..."`},
		{"garbage", "hello\n", Status{}, "want \"state: web: ...\""},
		{"unknown state", "paused: web: 1s\n", Status{}, "unknown state"},
		{"bad tail", "run: web: (pid x) 1s\n", Status{}, "want \"(pid N) Ns, flags\""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			svc := "web"
			if tc.name == "colon in name" {
				svc = "a:b"
			} else if tc.name == "crash loop" {
				svc = "bad"
			}
			got, err := parseSvStatus(tc.out, svc, now)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				if tc.name == "no such service" && !errors.Is(err, ErrNotFound) {
					t.Error("not ErrNotFound")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestRunitArgvs(t *testing.T) {
	for verb, want := range map[string]string{
		verbStart:   "sv up web",
		verbStop:    "sv down web",
		verbReload:  "sv hup web",
		verbRestart: "sv term web|sv cont web|sv up web",
	} {
		argvs, err := runit{}.actArgvs(verb, "web")
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, a := range argvs {
			got = append(got, strings.Join(a, " "))
		}
		if strings.Join(got, "|") != want {
			t.Errorf("%s: %q, want %q", verb, got, want)
		}
	}
	if _, err := (runit{}).actArgvs("enable", "web"); err == nil {
		t.Error("unknown verb accepted")
	}
}

// testHTTPEnv, when set, makes the test binary a tiny HTTP server on that
// address instead of running tests: the run script of the test service.
const testHTTPEnv = "SIGNET_SERVICE_TEST_HTTP"

func TestMain(m *testing.M) {
	if addr := os.Getenv(testHTTPEnv); addr != "" {
		os.Exit(serveForTest(addr))
	}
	os.Exit(m.Run())
}

// serveForTest answers GET / with "pid N reloads M", counting SIGHUPs
// (runit's reload) as reloads. SIGTERM ends it (the default action).
func serveForTest(addr string) int {
	var reloads atomic.Int64
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		for range hup {
			reloads.Add(1)
		}
	}()
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "pid %d reloads %d", os.Getpid(), reloads.Load())
	})
	err := http.ListenAndServe(addr, nil)
	fmt.Fprintln(os.Stderr, err)
	return 1
}

// runsvdirForTest starts a real runsvdir on a new service directory
// holding the given services (name to run script), each with a down file
// so that it starts stopped. runsvdir runs in its own process group; the
// cleanup stops every service, hangs up runsvdir (which sends TERM to its
// runsv children) and kills the group.
func runsvdirForTest(t *testing.T, services map[string]string) string {
	t.Helper()
	for _, prog := range []string{"runsvdir", "runsv", "sv"} {
		if _, err := exec.LookPath(prog); err != nil {
			t.Skipf("runit is not installed (%s not found): apt-get install runit", prog)
		}
	}
	dir := t.TempDir()
	for name, script := range services {
		sd := filepath.Join(dir, name)
		if err := os.Mkdir(sd, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(sd, "run"), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(sd, "down"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Become a child subreaper (prctl PR_SET_CHILD_SUBREAPER), so that
	// runsv processes orphaned by runsvdir's exit are reaped here, not
	// left to an init that may not reap them.
	const prSetChildSubreaper = 36
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0); errno != 0 {
		t.Logf("prctl(PR_SET_CHILD_SUBREAPER): %v; runsv processes may be left as zombies", errno)
	}
	cmd := exec.Command("runsvdir", dir)
	cmd.Env = command.DefaultEnv
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sv := func(args ...string) (string, error) {
		c := exec.Command("sv", args...)
		c.Env = append(append([]string(nil), command.DefaultEnv...), "SVDIR="+dir)
		out, err := c.CombinedOutput()
		return string(out), err
	}
	t.Cleanup(func() {
		// runsvdir on SIGHUP sends TERM to each runsv, which stops its
		// service, and exits at once without reaping them. This process
		// is a child subreaper, so the runsv processes become its
		// children: reap each one (or kill it, if it hangs).
		runsvs := childrenOf(cmd.Process.Pid)
		cmd.Process.Signal(syscall.SIGHUP)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Errorf("runsvdir did not exit on SIGHUP; killing its process group")
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		for _, pid := range runsvs {
			reap(t, pid)
		}
	})
	// runsvdir starts one runsv per service at once; wait for them.
	for name := range services {
		for i := 0; ; i++ {
			out, err := sv("status", name)
			if err == nil && strings.HasPrefix(out, "down: "+name+":") {
				break
			}
			if i == 100 {
				t.Fatalf("runsv for %s did not come up: %s", name, out)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return dir
}

// childrenOf lists the child processes of pid (Linux /proc).
func childrenOf(pid int) []int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		return nil
	}
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		if n, err := strconv.Atoi(f); err == nil {
			pids = append(pids, n)
		}
	}
	return pids
}

// reap waits for a child process to exit, killing it after 5 seconds.
func reap(t *testing.T, pid int) {
	t.Helper()
	var ws syscall.WaitStatus
	for i := 0; i < 50; i++ {
		got, err := syscall.Wait4(pid, &ws, syscall.WNOHANG, nil)
		if got == pid || err != nil { // err: not our child (no subreaper), nothing to reap
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Errorf("runsv %d did not exit on TERM; killing it", pid)
	syscall.Kill(pid, syscall.SIGKILL)
	syscall.Wait4(pid, &ws, 0, nil)
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// get fetches the test server's answer, retrying briefly in case the
// process is up but not yet listening.
func get(addr string) (string, error) {
	client := &http.Client{Timeout: 2 * time.Second}
	var err error
	for i := 0; i < 20; i++ {
		var resp *http.Response
		resp, err = client.Get("http://" + addr + "/")
		if err == nil {
			b, rerr := io.ReadAll(resp.Body)
			resp.Body.Close()
			return string(b), rerr
		}
		time.Sleep(100 * time.Millisecond)
	}
	return "", err
}

// TestRunitReal drives the plugin against a real runsvdir supervising a
// real HTTP server, the way signetd would on a runit host.
func TestRunitReal(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if strings.ContainsAny(exe, "'\n") {
		t.Skipf("test binary path %q cannot be quoted in a run script", exe)
	}
	addr := freePort(t)
	dir := runsvdirForTest(t, map[string]string{
		"web": fmt.Sprintf("#!/bin/sh\nexec 2>&1\nexec env %s=%s '%s'\n", testHTTPEnv, addr, exe),
		"bad": "#!/bin/sh\necho cannot start >&2\nexit 1\n",
	})
	s, err := newService(Config{Backend: BackendRunit, ServiceDir: dir}, "", command.Run)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	run := func(action, svc string) (*plugins.Result, error) {
		t.Helper()
		params := plugins.Params{"service": svc, "timeout": "10s"}
		if err := s.Validate(action, params); err != nil {
			t.Fatal(err)
		}
		return s.Run(ctx, &plugins.Request{Action: action, Params: params})
	}
	must := func(action string, wantChanged bool, wantState string) *plugins.Result {
		t.Helper()
		res, err := run(action, "web")
		if err != nil {
			t.Fatalf("%s: %v", action, err)
		}
		if res.Changed != wantChanged || res.Data["state"] != wantState {
			t.Fatalf("%s: changed=%v state=%v, want changed=%v state=%s (%+v)", action, res.Changed, res.Data["state"], wantChanged, wantState, res)
		}
		return res
	}
	pidOf := func(res *plugins.Result) int {
		t.Helper()
		pid, _ := res.Data["pid"].(int)
		if pid <= 0 || res.Data["active"] != true {
			t.Fatalf("running without a pid: %+v", res)
		}
		return pid
	}
	// answers checks the server's answer. sv hup returns once runsv has
	// the command, so the reload count may lag an instant: poll briefly.
	answers := func(pid, reloads int) {
		t.Helper()
		want := fmt.Sprintf("pid %d reloads %d", pid, reloads)
		var body string
		for i := 0; i < 30; i++ {
			var err error
			if body, err = get(addr); err != nil {
				t.Fatalf("server does not answer: %v", err)
			}
			if body == want {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("server says %q, want %q", body, want)
	}
	silent := func() {
		t.Helper()
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			t.Fatalf("something still listens on %s", addr)
		}
	}

	res := must("status", false, StateStopped)
	if res.Data["pid"] != 0 || res.Data["active"] != false || res.Summary != "web stopped" {
		t.Fatalf("status: %+v", res)
	}
	silent()
	must("stop", false, StateStopped)

	res = must("start", true, StateRunning)
	pid := pidOf(res)
	if res.Summary != "web running (pid "+strconv.Itoa(pid)+")" {
		t.Errorf("summary = %q", res.Summary)
	}
	answers(pid, 0)

	res = must("start", false, StateRunning)
	if pidOf(res) != pid {
		t.Fatalf("idempotent start changed the pid: %d, was %d", pidOf(res), pid)
	}

	res = must("restart", true, StateRunning)
	newPID := pidOf(res)
	if newPID == pid {
		t.Fatalf("restart kept pid %d", pid)
	}
	answers(newPID, 0)

	res = must("reload", true, StateRunning)
	if pidOf(res) != newPID {
		t.Fatalf("reload changed the pid: %d, was %d", pidOf(res), newPID)
	}
	answers(newPID, 1)

	must("stop", true, StateStopped)
	silent()
	must("stop", false, StateStopped)

	if _, err := run("reload", "web"); err == nil || !strings.Contains(err.Error(), "web: cannot reload a service that is not running (found stopped") {
		t.Fatalf("reload of a stopped service: %v", err)
	}

	// restart of a stopped service starts it.
	pidOf(must("restart", true, StateRunning))
	must("stop", true, StateStopped)

	t.Run("run script exits 1", func(t *testing.T) {
		params := plugins.Params{"service": "bad", "timeout": "3s"}
		_, err := s.Run(ctx, &plugins.Request{Action: "start", Params: params})
		var we *WaitError
		if !errors.As(err, &we) {
			t.Fatalf("err = %v, want a *WaitError", err)
		}
		if we.Want != StateRunning || we.After < 3*time.Second || we.Found.State == StateRunning && we.Found.Since.IsZero() {
			t.Errorf("wait error = %+v", we)
		}
		msg := err.Error()
		if !strings.HasPrefix(msg, "bad: wanted running, found ") || !strings.Contains(msg, " after 3s") {
			t.Errorf("message = %q", msg)
		}
		// Usually caught down between restarts; rarely in its first moment.
		if !strings.Contains(msg, "found starting (down, want up)") && !strings.Contains(msg, "less than the 1s it must stay up") {
			t.Errorf("message does not say what was found: %q", msg)
		}
		t.Log(msg)
		// Stop it again: stop must win over runsv's restarts.
		res, err := s.Run(ctx, &plugins.Request{Action: "stop", Params: params})
		if err != nil || res.Data["state"] != StateStopped {
			t.Fatalf("stop of the failing service: %+v, %v", res, err)
		}
	})

	t.Run("unknown service", func(t *testing.T) {
		_, err := run("start", "nosuch")
		if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "runit has no service nosuch in "+dir) {
			t.Fatalf("err = %v", err)
		}
	})

	t.Run("allow-list", func(t *testing.T) {
		s, err := newService(Config{Backend: BackendRunit, ServiceDir: dir, Services: []string{"web"}}, "", command.Run)
		if err != nil {
			t.Fatal(err)
		}
		err = s.Validate("start", plugins.Params{"service": "bad"})
		_, runErr := s.Run(ctx, &plugins.Request{Action: "start", Params: plugins.Params{"service": "bad"}})
		if err == nil || runErr == nil || !strings.Contains(runErr.Error(), "not in this host's services list") {
			t.Fatalf("bad allowed: %v, %v", err, runErr)
		}
		if out, _ := exec.Command("sv", "status", filepath.Join(dir, "bad")).Output(); !strings.HasPrefix(string(out), "down:") {
			t.Errorf("refused service was touched: %s", out)
		}
	})
}

// TestRunitNotSupervised checks the message when no runsv supervises the
// service directory (runsvdir is not running).
func TestRunitNotSupervised(t *testing.T) {
	if _, err := exec.LookPath("sv"); err != nil {
		t.Skip("runit is not installed (sv not found): apt-get install runit")
	}
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "web"), 0o755); err != nil {
		t.Fatal(err)
	}
	s, err := newService(Config{Backend: BackendRunit, ServiceDir: dir}, "", command.Run)
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Run(context.Background(), &plugins.Request{Action: "status", Params: plugins.Params{"service": "web"}})
	if err == nil || !strings.Contains(err.Error(), "web: sv status web: runsv is not supervising web") {
		t.Fatalf("err = %v", err)
	}
}
