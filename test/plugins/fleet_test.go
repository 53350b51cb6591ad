// Package plugins exercises every whitelisted plugin through the whole
// signed bus: a bus.Client signs each request with the lab operator's key,
// the embedded broker carries it, a responder verifies signature, freshness
// and policy, validates the parameters (the DDL, then the plugin's
// Validator), runs the plugin against a real backend, audits the request and
// signs its reply, which the client verifies against known_hosts.
//
// All tests share one stage of three hosts (internal/stage) with real
// backends: a dpkg/apt root per host holding the demo .deb at 1.0 (1.1 in the
// repository), the demo app supervised by a real runit per host, one real
// HAProxy in front of the three apps, and a real Alertmanager. The package
// skips, saying which backend is missing, when one is not installed; CI
// installs them all.
//
// Hosts are split so that the tests do not trip over each other: package
// changes web1, service stops and restarts web2, haproxy drains web3,
// maintenance mutes web1, health reads web3. Every test that changes a host
// puts it back before it ends, so the tests run in any order and with
// -count=N.
package plugins

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/signetbus/signet/bus"
	"github.com/signetbus/signet/internal/stage"
	"github.com/signetbus/signet/internal/stage/stagetest"
)

// fleet is the stage every test shares; started on first use by
// sharedStage and stopped by TestMain.
var fleet struct {
	once    sync.Once
	stage   *stage.Stage
	op      *stage.Operator
	logs    *logBuffer
	dir     string
	skip    string // why the tests skip: a backend is missing
	err     error  // why the stage did not start
	backend map[string]string
}

func TestMain(m *testing.M) {
	code := m.Run()
	if fleet.op != nil {
		fleet.op.Close()
	}
	if fleet.stage != nil {
		if err := fleet.stage.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "stop the stage: %v\n", err)
			if code == 0 {
				code = 1
			}
		}
	}
	if fleet.dir != "" {
		os.RemoveAll(fleet.dir)
	}
	os.Exit(code)
}

// sharedStage returns the running stage and a signed client of it,
// starting it on first use. It skips the test when a real backend is
// missing on this machine, naming it.
func sharedStage(t *testing.T) (*stage.Stage, *bus.Client) {
	t.Helper()
	fleet.once.Do(startFleet)
	if fleet.skip != "" {
		t.Skip(fleet.skip)
	}
	if fleet.err != nil {
		t.Fatalf("start the stage: %v", fleet.err)
	}
	return fleet.stage, fleet.op.Client
}

func startFleet() {
	var missing []string
	for k, v := range stage.Detect(false) {
		if !strings.HasPrefix(v, "real") {
			missing = append(missing, k+" ("+v+")")
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		fleet.skip = "real backends missing (CI installs them): " + strings.Join(missing, "; ")
		return
	}
	dir, err := os.MkdirTemp("", "signet-plugins")
	if err != nil {
		fleet.err = err
		return
	}
	fleet.dir = dir
	fleet.logs = &logBuffer{}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	log := slog.New(slog.NewJSONHandler(fleet.logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	s, err := stage.Start(ctx, stage.Options{Dir: dir, Hosts: 3, Logger: log, AppCommand: stagetest.AppCommand()})
	if err != nil {
		fleet.err = err
		return
	}
	fleet.stage = s
	for k, v := range s.Backends {
		if !strings.HasPrefix(v, "real") {
			fleet.err = fmt.Errorf("backend %s is %q although Detect found it real", k, v)
			return
		}
	}
	if fleet.op, err = s.Operator(ctx); err != nil {
		fleet.err = err
	}
}

// logBuffer collects the responders' JSON logs, so that a test can prove a
// refused request never reached a plugin's Run.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// records returns the log records carrying request_id id.
func (b *logBuffer) records(id string) []map[string]any {
	b.mu.Lock()
	data := slices.Clone(b.buf.Bytes())
	b.mu.Unlock()
	var out []map[string]any
	for line := range bytes.Lines(data) {
		if !bytes.Contains(line, []byte(id)) {
			continue
		}
		var rec map[string]any
		if json.Unmarshal(line, &rec) == nil && rec["request_id"] == id {
			out = append(out, rec)
		}
	}
	return out
}

// ranAction reports whether the host logged "running action" for the
// request: agents.Host.Handle logs it right before calling the plugin's Run,
// after every check has passed.
func ranAction(id string) bool {
	for _, r := range fleet.logs.records(id) {
		if r["msg"] == "running action" {
			return true
		}
	}
	return false
}

// call is one signed request to one host and its verified reply.
type call struct {
	ID     string // the request id
	Result bus.Result
}

// Reply returns the verified reply; the caller has checked there is one.
func (c call) Reply() *bus.Reply { return c.Result.Reply }

// do sends agent.action with params directly to host over the signed bus and
// returns its verified answer. A missing, forged or unknown-host answer fails
// the test: every case here expects the host to answer.
func do(t *testing.T, host, agent, action string, params map[string]any) call {
	t.Helper()
	_, client := sharedStage(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := client.Do(ctx, bus.Query{Agent: agent, Action: action, Params: params, Targets: []string{host}, Timeout: 90 * time.Second})
	if err != nil {
		t.Fatalf("%s %s.%s: %v", host, agent, action, err)
	}
	if len(out.Results) != 1 || len(out.RequestIDs) != 1 {
		t.Fatalf("%s %s.%s: want one answer to one request, got %+v", host, agent, action, out)
	}
	r := out.Results[0]
	if r.Identity != host || r.Reply == nil {
		t.Fatalf("%s %s.%s: want a verified reply from %s, got %s %q (%+v)", host, agent, action, host, r.Status, r.Error, r)
	}
	if r.Reply.RequestID != out.RequestIDs[0] || r.Reply.Agent != agent || r.Reply.Action != action {
		t.Fatalf("%s %s.%s: reply is for request %s %s.%s, sent %s", host, agent, action, r.Reply.RequestID, r.Reply.Agent, r.Reply.Action, out.RequestIDs[0])
	}
	return call{ID: out.RequestIDs[0], Result: r}
}

// mustOK is do that fails the test unless the action succeeded.
func mustOK(t *testing.T, host, agent, action string, params map[string]any) *bus.Reply {
	t.Helper()
	c := do(t, host, agent, action, params)
	if c.Result.Status != bus.ResultOK {
		t.Fatalf("%s %s.%s %v: want ok, got %s (%s): %s", host, agent, action, params, c.Result.Status, c.Reply().Code, c.Result.Error)
	}
	return c.Reply()
}

// mustFail is do that fails the test unless the action ran and failed
// (status failed, code failed), and returns the reply.
func mustFail(t *testing.T, host, agent, action string, params map[string]any) *bus.Reply {
	t.Helper()
	c := do(t, host, agent, action, params)
	if c.Result.Status != bus.ResultFailed || c.Reply().Code != bus.CodeFailed {
		t.Fatalf("%s %s.%s %v: want failed with code %s, got %s (%s): %s", host, agent, action, params, bus.CodeFailed, c.Result.Status, c.Reply().Code, c.Result.Error)
	}
	return c.Reply()
}

// auditRecord returns the audit record of request id in host's audit log,
// or nil. The responder writes it before it sends the reply.
func auditRecord(t *testing.T, host, id string) *bus.AuditRecord {
	t.Helper()
	s, _ := sharedStage(t)
	h := s.Lab.Host(host)
	if h == nil {
		t.Fatalf("no lab host %s", host)
	}
	f, err := os.Open(filepath.Join(h.Dir, "audit.jsonl"))
	if err != nil {
		t.Fatalf("audit log of %s: %v", host, err)
	}
	defer f.Close()
	var found *bus.AuditRecord
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		if !bytes.Contains(sc.Bytes(), []byte(id)) {
			continue
		}
		var rec bus.AuditRecord
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("audit log of %s: %v in %q", host, err, sc.Text())
		}
		if rec.RequestID == id && rec.Decision != bus.DecisionStarted { // the result, not the record written before the run
			if found != nil {
				t.Fatalf("audit log of %s: request %s recorded twice", host, id)
			}
			found = &rec
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("audit log of %s: %v", host, err)
	}
	return found
}

// num returns a JSON number from reply data as an int64 (replies are
// decoded without UseNumber, so numbers are float64).
func num(v any) int64 {
	f, _ := v.(float64)
	return int64(f)
}

// servers returns data.servers of a haproxy reply as maps.
func servers(t *testing.T, rep *bus.Reply) []map[string]any {
	t.Helper()
	raw, ok := rep.Data["servers"].([]any)
	if !ok {
		t.Fatalf("haproxy %s: no servers list in %v", rep.Action, rep.Data)
	}
	out := make([]map[string]any, len(raw))
	for i, r := range raw {
		if out[i], ok = r.(map[string]any); !ok {
			t.Fatalf("haproxy %s: server %d is %T", rep.Action, i, r)
		}
	}
	return out
}

// statOf returns HAProxy's own view (show stat on the admin socket, not
// through the plugin) of server in the app's backend.
func statOf(t *testing.T, server string) stage.ServerStat {
	t.Helper()
	s, _ := sharedStage(t)
	stats, err := s.ShowStat(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range stats {
		if st.Server == server {
			return st
		}
	}
	t.Fatalf("haproxy show stat has no server %s: %+v", server, stats)
	return stage.ServerStat{}
}

// waitAllUp waits until HAProxy's health checks see every server UP, as
// after a test that stopped an app.
func waitAllUp(t *testing.T) {
	t.Helper()
	s, _ := sharedStage(t)
	var last []stage.ServerStat
	for range 150 {
		stats, err := s.ShowStat(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		last = stats
		up := len(stats) == len(s.Hosts)
		for _, st := range stats {
			up = up && st.Status == "UP"
		}
		if up {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("haproxy: not every server UP after 15s: %+v", last)
}
