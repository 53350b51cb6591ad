package maintenance

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/signetbus/signet/internal/command"
	"github.com/signetbus/signet/plugins"
)

const alertmanagerBin = "/usr/bin/prometheus-alertmanager"

// startAlertmanager runs the real Alertmanager (Debian's
// prometheus-alertmanager) on a free loopback port with clustering off and
// returns its base URL.
func startAlertmanager(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath(alertmanagerBin)
	if err != nil {
		t.Skipf("real Alertmanager missing (%v): install the Debian package prometheus-alertmanager", err)
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "alertmanager.yml")
	if err := os.WriteFile(cfg, []byte("route:\n  receiver: \"null\"\nreceivers:\n  - name: \"null\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	var (
		res    *command.Result
		runErr error
	)
	go func() {
		defer close(done)
		res, runErr = command.Run(ctx, command.Spec{Argv: []string{bin,
			"--config.file=" + cfg,
			"--storage.path=" + filepath.Join(dir, "data"),
			"--web.listen-address=" + addr,
			"--cluster.listen-address=",
		}})
	}()
	t.Cleanup(func() { cancel(); <-done })

	base := "http://" + addr
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-done:
			out := ""
			if res != nil {
				out = res.Stderr
			}
			t.Fatalf("alertmanager exited before ready: %v\n%s", runErr, out)
		default:
		}
		resp, err := http.Get(base + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return base
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("alertmanager at %s not ready after 30s: %v", base, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func newTestPlugin(t *testing.T, config string) *Maintenance {
	t.Helper()
	p, err := New(json.RawMessage(config))
	if err != nil {
		t.Fatalf("New(%s): %v", config, err)
	}
	return p.(*Maintenance)
}

// run validates raw params against the DDL and Validate, as signetd does,
// then runs the action.
func run(t *testing.T, p *Maintenance, identity, caller, action string, raw map[string]any) (*plugins.Result, error) {
	t.Helper()
	params, err := plugins.Prepare(p, action, raw)
	if err != nil {
		return nil, err
	}
	return p.Run(context.Background(), &plugins.Request{Action: action, Params: params, Identity: identity,
		Caller: caller, RequestID: "req-1", Log: slog.New(slog.DiscardHandler)})
}

func mustRun(t *testing.T, p *Maintenance, identity, caller, action string, raw map[string]any) *plugins.Result {
	t.Helper()
	res, err := run(t, p, identity, caller, action, raw)
	if err != nil {
		t.Fatalf("%s %v: %v", action, raw, err)
	}
	return res
}

// amAPI talks to Alertmanager directly, as a person or the test would.
type amAPI struct {
	t    *testing.T
	base string
}

func (a amAPI) silences() []amSilence {
	a.t.Helper()
	resp, err := http.Get(a.base + "/api/v2/silences")
	if err != nil {
		a.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out []amSilence
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		a.t.Fatal(err)
	}
	return out
}

func (a amAPI) silence(id string) amSilence {
	a.t.Helper()
	for _, s := range a.silences() {
		if s.ID == id {
			return s
		}
	}
	a.t.Fatalf("silence %s not found", id)
	return amSilence{}
}

func (a amAPI) active(createdByPrefix string) []amSilence {
	var out []amSilence
	for _, s := range a.silences() {
		if s.Status.State == "active" && strings.HasPrefix(s.CreatedBy, createdByPrefix) {
			out = append(out, s)
		}
	}
	return out
}

func (a amAPI) post(path string, body any) []byte {
	a.t.Helper()
	b, _ := json.Marshal(body)
	resp, err := http.Post(a.base+path, "application/json", bytes.NewReader(b))
	if err != nil {
		a.t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		a.t.Fatalf("POST %s: %d %s", path, resp.StatusCode, out)
	}
	return out
}

// silencedBy returns the silences muting the alert with these labels.
func (a amAPI) silencedBy(labels map[string]string) []string {
	a.t.Helper()
	resp, err := http.Get(a.base + "/api/v2/alerts")
	if err != nil {
		a.t.Fatal(err)
	}
	defer resp.Body.Close()
	var alerts []struct {
		Labels map[string]string `json:"labels"`
		Status struct {
			SilencedBy []string `json:"silencedBy"`
		} `json:"status"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&alerts); err != nil {
		a.t.Fatal(err)
	}
	for _, al := range alerts {
		if fmt.Sprint(al.Labels) == fmt.Sprint(labels) {
			return al.Status.SilencedBy
		}
	}
	a.t.Fatalf("alert %v not found in %+v", labels, alerts)
	return nil
}

func TestAlertmanagerLifecycle(t *testing.T) {
	base := startAlertmanager(t)
	am := amAPI{t: t, base: base}
	p := newTestPlugin(t, `{"backends":[{"alertmanager":{"url":"`+base+`"}}]}`)

	// Alerts for this host on two ports, and for a host whose name
	// starts with this one's: only the first two may be muted.
	mine := map[string]string{"alertname": "Down", "instance": "web1.example:9100"}
	mineNoPort := map[string]string{"alertname": "Down", "instance": "web1.example"}
	other := map[string]string{"alertname": "Down", "instance": "web1.example.org:9100"}
	dotted := map[string]string{"alertname": "Down", "instance": "web1xexample:9100"}
	end := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	am.post("/api/v2/alerts", []map[string]any{
		{"labels": mine, "endsAt": end}, {"labels": mineNoPort, "endsAt": end},
		{"labels": other, "endsAt": end}, {"labels": dotted, "endsAt": end},
	})

	st := mustRun(t, p, "web1.example", "alice", "status", nil)
	if st.Data["active"] != false || st.Changed {
		t.Fatalf("status before start = %+v, want inactive", st)
	}

	// start: one active silence, marked as signet's, muting this host only.
	before := time.Now()
	res := mustRun(t, p, "web1.example", "alice", "start", map[string]any{"duration": "45m", "comment": "deploy 1.1"})
	if !res.Changed || res.Data["active"] != true || res.Data["backend"] != "alertmanager" {
		t.Fatalf("start = %+v", res)
	}
	ids := res.Data["ids"].([]string)
	if len(ids) != 1 {
		t.Fatalf("start ids = %v, want one", ids)
	}
	sil := am.silence(ids[0])
	if sil.Status.State != "active" || sil.CreatedBy != "signet/alice" || sil.Comment != "signet: deploy 1.1 (request req-1)" {
		t.Fatalf("silence = %+v", sil)
	}
	if len(sil.Matchers) != 1 || sil.Matchers[0].Name != "instance" || sil.Matchers[0].Value != `web1\.example(:[0-9]+)?` || !sil.Matchers[0].IsRegex {
		t.Fatalf("matchers = %+v", sil.Matchers)
	}
	if d := sil.EndsAt.Sub(before); d < 44*time.Minute || d > 46*time.Minute {
		t.Fatalf("silence ends %v after start, want about 45m", d)
	}
	until, err := time.Parse(time.RFC3339, res.Data["until"].(string))
	if err != nil || !until.Equal(sil.EndsAt.Truncate(time.Second)) {
		t.Fatalf("until = %v (%v), silence ends %v", res.Data["until"], err, sil.EndsAt)
	}
	for _, c := range []struct {
		labels map[string]string
		muted  bool
	}{{mine, true}, {mineNoPort, true}, {other, false}, {dotted, false}} {
		if got := am.silencedBy(c.labels); (len(got) > 0) != c.muted {
			t.Errorf("alert %v silenced by %v, want muted=%v", c.labels, got, c.muted)
		}
	}

	// A person silences the same host by hand, and signet silences
	// another host: neither may be touched by this host's end.
	human := am.post("/api/v2/silences", map[string]any{
		"matchers": []map[string]any{{"name": "instance", "value": `web1\.example(:[0-9]+)?`, "isRegex": true, "isEqual": true}},
		"startsAt": time.Now().UTC().Format(time.RFC3339), "endsAt": time.Now().Add(2 * time.Hour).UTC().Format(time.RFC3339),
		"createdBy": "carol", "comment": "disk replacement",
	})
	var humanID struct {
		SilenceID string `json:"silenceID"`
	}
	if err := json.Unmarshal(human, &humanID); err != nil {
		t.Fatal(err)
	}
	web2 := mustRun(t, p, "web2", "alice", "start", nil)

	// start again, by someone else: still exactly one active signet
	// silence for this host, now ending later and carrying the new author.
	res2 := mustRun(t, p, "web1.example", "bob", "start", map[string]any{"duration": "2h"})
	if !res2.Changed || !strings.Contains(res2.Summary, "replaced") {
		t.Fatalf("second start = %+v, want changed and replaced", res2)
	}
	var signetWeb1 []amSilence
	for _, s := range am.active("signet/") {
		if s.Matchers[0].Value == `web1\.example(:[0-9]+)?` {
			signetWeb1 = append(signetWeb1, s)
		}
	}
	if len(signetWeb1) != 1 {
		t.Fatalf("active signet silences for web1.example after two starts = %+v, want exactly one", signetWeb1)
	}
	if signetWeb1[0].CreatedBy != "signet/bob" || signetWeb1[0].EndsAt.Sub(before) < 119*time.Minute {
		t.Fatalf("silence after second start = %+v, want bob's ending in about 2h", signetWeb1[0])
	}
	if id := res2.Data["ids"].([]string)[0]; id != signetWeb1[0].ID {
		t.Fatalf("second start reported id %s, active silence is %s", id, signetWeb1[0].ID)
	}

	st = mustRun(t, p, "web1.example", "alice", "status", nil)
	if st.Data["active"] != true || fmt.Sprint(st.Data["ids"]) != fmt.Sprint([]string{signetWeb1[0].ID}) {
		t.Fatalf("status = %+v, want active with %s only (not the human's)", st, signetWeb1[0].ID)
	}

	// end: signet's silence expired; the human's and web2's survive.
	e := mustRun(t, p, "web1.example", "carol", "end", nil)
	if !e.Changed || e.Data["active"] != false || fmt.Sprint(e.Data["ids"]) != fmt.Sprint([]string{signetWeb1[0].ID}) {
		t.Fatalf("end = %+v", e)
	}
	if s := am.silence(signetWeb1[0].ID); s.Status.State != "expired" {
		t.Fatalf("signet silence after end is %s, want expired", s.Status.State)
	}
	if s := am.silence(humanID.SilenceID); s.Status.State != "active" {
		t.Fatalf("human silence after end is %s, want active", s.Status.State)
	}
	if s := am.silence(web2.Data["ids"].([]string)[0]); s.Status.State != "active" {
		t.Fatalf("web2 silence after web1's end is %s, want active", s.Status.State)
	}

	// end again: nothing left to do.
	e2 := mustRun(t, p, "web1.example", "carol", "end", nil)
	if e2.Changed || len(e2.Data["ids"].([]string)) != 0 {
		t.Fatalf("second end = %+v, want unchanged", e2)
	}
	st = mustRun(t, p, "web1.example", "alice", "status", nil)
	if st.Data["active"] != false || st.Data["until"] != "" {
		t.Fatalf("status after end = %+v, want inactive (the human silence is not signet's)", st)
	}
}

func TestAlertmanagerCustomMatchersAndAuth(t *testing.T) {
	base := startAlertmanager(t)
	am := amAPI{t: t, base: base}
	tok := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tok, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Alertmanager itself ignores the bearer token; this proves a
	// configured token does not break requests.
	p := newTestPlugin(t, `{"max_duration":"1h","backends":[{"alertmanager":{"url":"`+base+`/","bearer_token_file":"`+tok+`",
		"matchers":[{"name":"host","value":"{{identity}}"},{"name":"env","value":"prod"}]}}]}`)
	res := mustRun(t, p, "db1", "alice", "start", nil)
	sil := am.silence(res.Data["ids"].([]string)[0])
	got := matcherKey(sil.Matchers)
	tr := true
	want := matcherKey([]amMatcher{{Name: "host", Value: "db1", IsEqual: &tr}, {Name: "env", Value: "prod", IsEqual: &tr}})
	if got != want {
		t.Fatalf("matchers = %s, want %s", got, want)
	}
	// The default duration is 30m.
	if d := time.Until(sil.EndsAt); d < 29*time.Minute || d > 31*time.Minute {
		t.Fatalf("default silence lasts %v, want 30m", d)
	}
	if _, err := run(t, p, "db1", "alice", "start", map[string]any{"duration": "61m"}); err == nil {
		t.Fatal("start above max_duration 1h succeeded")
	}
	mustRun(t, p, "db1", "alice", "end", nil)
	if len(am.active("signet/")) != 0 {
		t.Fatalf("active signet silences after end: %+v", am.active("signet/"))
	}
}

func TestAlertmanagerDurationCap(t *testing.T) {
	base := startAlertmanager(t)
	am := amAPI{t: t, base: base}
	p := newTestPlugin(t, `{"backends":[{"alertmanager":{"url":"`+base+`"}}]}`)
	for _, d := range []string{"4h1m", "24h", "30s", "0s", "-5m"} {
		_, err := run(t, p, "web1", "alice", "start", map[string]any{"duration": d})
		var perr *plugins.ParamError
		if !errors.As(err, &perr) || perr.Param != "duration" {
			t.Errorf("start duration %s: err = %v, want a duration ParamError", d, err)
		}
	}
	// Run refuses it too when a caller skipped validation.
	_, err := p.Run(context.Background(), &plugins.Request{Action: "start", Params: plugins.Params{"duration": "5h"},
		Identity: "web1", Caller: "alice"})
	if err == nil || !strings.Contains(err.Error(), "4h0m0s") {
		t.Fatalf("Run with 5h: err = %v, want the 4h cap named", err)
	}
	if s := am.silences(); len(s) != 0 {
		t.Fatalf("refused starts created silences: %+v", s)
	}
	if _, err := run(t, p, "web1", "alice", "start", map[string]any{"duration": "4h"}); err != nil {
		t.Fatalf("start at exactly the cap: %v", err)
	}
}

func TestAlertmanagerUnreachable(t *testing.T) {
	addr := freeAddr(t) // nothing listens here
	p := newTestPlugin(t, `{"backends":[{"alertmanager":{"url":"http://`+addr+`"}}]}`)
	for _, action := range []string{"start", "end", "status"} {
		_, err := run(t, p, "web1", "alice", action, nil)
		if err == nil {
			t.Fatalf("%s against %s succeeded", action, addr)
		}
		msg := err.Error()
		for _, want := range []string{"maintenance " + action + " for web1", "alertmanager at http://" + addr, "list silences", "connection refused"} {
			if !strings.Contains(msg, want) {
				t.Errorf("%s: error %q does not say %q", action, msg, want)
			}
		}
	}
}

func TestAlertmanagerRejectsBadAnswer(t *testing.T) {
	base := startAlertmanager(t)
	// Alertmanager answers 400 to a silence it finds invalid; a matcher
	// that matches the empty string for every label is one.
	p := newTestPlugin(t, `{"backends":[{"alertmanager":{"url":"`+base+`","matchers":[{"name":"instance","value":"({{identity}})?","regex":true}]}}]}`)
	_, err := run(t, p, "web1", "alice", "start", nil)
	var aerr *APIError
	if !errors.As(err, &aerr) || aerr.Status != http.StatusBadRequest || aerr.Op != "create silence" {
		t.Fatalf("err = %v, want an APIError 400 for create silence", err)
	}
}
