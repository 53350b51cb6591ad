package stage

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/signetbus/signet/workflows"
)

// startStage starts a stage for the test, stopped at cleanup. With real
// set, it skips unless every backend is real on this machine, saying which
// is missing (CI installs them all).
func startStage(t *testing.T, hosts int, real bool) *Stage {
	t.Helper()
	if real {
		var missing []string
		for k, v := range Detect(false) {
			if !strings.HasPrefix(v, "real") {
				missing = append(missing, k+" ("+v+")")
			}
		}
		if len(missing) > 0 {
			t.Skipf("real backends missing: %s", strings.Join(missing, "; "))
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := Start(ctx, Options{Dir: t.TempDir(), Hosts: hosts, Sandbox: !real, AppCommand: testAppCommand(t)})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	for k, v := range s.Backends {
		if real != strings.HasPrefix(v, "real") && k != BackendHealth {
			t.Fatalf("backend %s is %q, want real=%v", k, v, real)
		}
	}
	return s
}

func operator(t *testing.T, s *Stage) *Operator {
	t.Helper()
	op, err := s.Operator(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(op.Close)
	return op
}

// call runs one action on one host over the signed bus.
func call(t *testing.T, op *Operator, host, agent, action string, params map[string]any) workflows.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := op.Caller.Call(ctx, workflows.Call{Agent: agent, Action: action, Params: params, Hosts: []string{host}, Timeout: 50 * time.Second})
	if err != nil {
		t.Fatalf("%s %s.%s: %v", host, agent, action, err)
	}
	if len(res) != 1 || res[0].Host != host {
		t.Fatalf("%s %s.%s: want one answer from %s, got %+v", host, agent, action, host, res)
	}
	return res[0]
}

// TestStage runs the same checks against the real backends (haproxy,
// Alertmanager, runit, apt/dpkg) and against the sandbox ones: every app
// serves the first version, HAProxy (through the bus) sees every server
// UP, BreakHealth fails the health check and HAProxy's, BreakPackage fails
// the update, maintenance shows as a silence, and Stop leaves nothing
// answering.
func TestStage(t *testing.T) {
	for _, real := range []bool{true, false} {
		t.Run(map[bool]string{true: "real", false: "sandbox"}[real], func(t *testing.T) {
			s := startStage(t, 3, real)
			op := operator(t, s)
			ctx := context.Background()

			for id, v := range s.Serving(ctx) {
				if v != "1.0" {
					t.Errorf("%s serves %q, want 1.0", id, v)
				}
			}
			if real {
				seen, err := s.ThroughFrontend(ctx, 6)
				if err != nil {
					t.Fatal(err)
				}
				for _, h := range s.Hosts {
					if seen["demo 1.0 on "+h.Identity] == 0 {
						t.Errorf("haproxy frontend never reached %s: %v", h.Identity, seen)
					}
				}
			}

			r := call(t, op, "web1", "haproxy", "status", map[string]any{"backend": "demo"})
			if !r.OK {
				t.Fatalf("haproxy status: %s", r.Error)
			}
			servers, _ := r.Data["servers"].([]any)
			if len(servers) != 3 {
				t.Fatalf("haproxy status: want 3 servers, got %v", r.Data)
			}
			for _, sv := range servers {
				m := sv.(map[string]any)
				if m["status"] != "UP" {
					t.Errorf("haproxy status: %v is %v, want UP", m["server"], m["status"])
				}
			}

			// The deploy's health check, as the app file has it.
			healthURL := strings.ReplaceAll(s.HealthURL, "{{identity}}", "web2")
			check := map[string]any{"url": healthURL, "contains": "1.0", "retries": 1}
			if r := call(t, op, "web2", "health", "http", check); !r.OK {
				t.Fatalf("health before BreakHealth: %s", r.Error)
			}
			if err := s.BreakHealth("web2"); err != nil {
				t.Fatal(err)
			}
			r = call(t, op, "web2", "health", "http", check)
			if r.OK || !strings.Contains(r.Error, "500") {
				t.Errorf("health after BreakHealth: want a failure naming status 500, got ok=%v %q", r.OK, r.Error)
			}
			waitStat(t, s, "web2", func(st string) bool { return strings.HasPrefix(st, "DOWN") })
			if err := s.FixHealth("web2"); err != nil {
				t.Fatal(err)
			}
			if r := call(t, op, "web2", "health", "http", check); !r.OK {
				t.Errorf("health after FixHealth: %s", r.Error)
			}
			waitStat(t, s, "web2", func(st string) bool { return st == "UP" })

			if err := s.BreakPackage("web3", "1.1"); err != nil {
				t.Fatal(err)
			}
			r = call(t, op, "web3", "package", "update", map[string]any{"package": "demo", "version": "1.1"})
			if r.OK || !strings.Contains(r.Error, "update demo 1.1") {
				t.Errorf("update on a broken host: want a failure of update demo 1.1, got ok=%v %q", r.OK, r.Error)
			}
			t.Logf("broken update: %s", r.Error)
			if v, _ := s.Serves(ctx, "web3"); v != "1.0" {
				t.Errorf("web3 serves %q after the failed update, want 1.0", v)
			}
			if r := call(t, op, "web1", "package", "update", map[string]any{"package": "demo", "version": "1.1"}); !r.OK || r.Data["previous"] != "1.0" {
				t.Errorf("update on a healthy host: ok=%v %q %v", r.OK, r.Error, r.Data)
			}
			if v, _ := s.Serves(ctx, "web1"); v != "1.1" {
				t.Errorf("web1 serves %q after the update, want 1.1", v)
			}

			if r := call(t, op, "web1", "maintenance", "start", map[string]any{"duration": "10m", "comment": "stage test"}); !r.OK {
				t.Fatalf("maintenance start: %s", r.Error)
			}
			sil, err := s.Silences(ctx)
			if err != nil || len(sil) != 1 || sil[0].Host != "web1" {
				t.Errorf("silences after maintenance start on web1: %+v, %v", sil, err)
			}
			call(t, op, "web1", "maintenance", "end", map[string]any{})
			if sil, err := s.Silences(ctx); err != nil || len(sil) != 0 {
				t.Errorf("silences after maintenance end: %+v, %v", sil, err)
			}

			if err := s.Stop(); err != nil {
				t.Fatalf("Stop: %v", err)
			}
			for _, h := range s.Hosts {
				if resp, err := http.Get(h.AppURL + "/version"); err == nil {
					resp.Body.Close()
					t.Errorf("%s app still answers after Stop", h.Identity)
				}
			}
			if s.FrontendURL != "" {
				if resp, err := http.Get(s.FrontendURL); err == nil {
					resp.Body.Close()
					t.Errorf("haproxy still answers after Stop")
				}
			}
		})
	}
}

// waitStat waits until HAProxy (or the sandbox balancer) reports server
// in a status that ok accepts.
func waitStat(t *testing.T, s *Stage, server string, ok func(string) bool) {
	t.Helper()
	var last string
	for i := 0; i < 100; i++ {
		stats, err := s.ShowStat(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, st := range stats {
			if st.Server == server {
				last = st.Status
			}
		}
		if ok(last) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Errorf("haproxy: %s stayed %q", server, last)
}

// TestStartRejects checks the options Start refuses before starting anything.
func TestStartRejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    Options
		want string
	}{
		{"no dir", Options{}, "a directory is required"},
		{"too many hosts", Options{Dir: t.TempDir(), Hosts: 51}, "hosts: want 1 to 50"},
		{"negative hosts", Options{Dir: t.TempDir(), Hosts: -1}, "hosts: want 1 to 50"},
		{"app with a slash", Options{Dir: t.TempDir(), App: "../x"}, "app: want lowercase"},
		{"app with a leading dash", Options{Dir: t.TempDir(), App: "-x"}, "app: want lowercase"},
		{"version with a space", Options{Dir: t.TempDir(), Versions: []string{"1.0 x"}}, "versions: want"},
		{"version with a slash", Options{Dir: t.TempDir(), Versions: []string{"1/../2"}}, "versions: want"},
		{"dir with a quote", Options{Dir: t.TempDir() + `/a"b`}, "without quotes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Start(context.Background(), tc.o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestBreakRejects(t *testing.T) {
	s := &Stage{App: "demo", Hosts: []*Host{{Identity: "web1", Root: t.TempDir()}}}
	if err := s.BreakPackage("web9", "1.1"); err == nil || !strings.Contains(err.Error(), "no such host") {
		t.Errorf("unknown host: got %v", err)
	}
	if err := s.BreakHealth("web9"); err == nil || !strings.Contains(err.Error(), "no such host") {
		t.Errorf("unknown host: got %v", err)
	}
	for _, v := range []string{"../x", "1.1;rm", "", "-1"} {
		if err := s.BreakPackage("web1", v); err == nil || !strings.Contains(err.Error(), "want a version") {
			t.Errorf("version %q: got %v", v, err)
		}
		if err := s.FixPackage("web1", v); err == nil || !strings.Contains(err.Error(), "want a version") {
			t.Errorf("fix version %q: got %v", v, err)
		}
	}
}

func TestParseShowStat(t *testing.T) {
	raw := "# pxname,svname,qcur,scur,status,weight,check_status,\n" +
		"fe,FRONTEND,,0,OPEN,,,\n" +
		"demo,web10,0,0,UP,1,L7OK,\n" +
		"demo,web2,0,3,DOWN,1,L7STS,\n" +
		"demo,BACKEND,0,0,UP,2,,\n" +
		"other,web1,0,0,UP,1,L7OK,\n"
	got, err := parseShowStat(raw, "demo")
	if err != nil {
		t.Fatal(err)
	}
	want := "[{demo web2 DOWN L7STS 1 3 } {demo web10 UP L7OK 1 0 }]"
	if fmt.Sprint(got) != want {
		t.Errorf("got %v, want %s", got, want)
	}
	if _, err := parseShowStat("", "demo"); err == nil {
		t.Error("empty show stat: want an error")
	}
}
