package workflows_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/signetbus/signet/workflows"
	"github.com/signetbus/signet/workflows/gatelab"
)

// monitoring starts a real Prometheus scraping a metrics endpoint the
// test controls, and a real Alertmanager, or skips saying which is
// missing (CI installs both).
func monitoring(t *testing.T) (*gatelab.Metrics, *gatelab.Prometheus, *gatelab.Alertmanager) {
	t.Helper()
	if gatelab.PrometheusBin() == "" || gatelab.AlertmanagerBin() == "" {
		t.Skip("prometheus or prometheus-alertmanager is not installed (apt install prometheus prometheus-alertmanager)")
	}
	m, err := gatelab.ServeMetrics()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	p, err := gatelab.StartPrometheus(ctx, gatelab.PrometheusOptions{Dir: filepath.Join(dir, "prometheus"), Targets: []string{m.Addr}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop() })
	am, err := gatelab.StartAlertmanager(ctx, filepath.Join(dir, "alertmanager"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { am.Stop() })
	return m, p, am
}

func promGate(url, query, cond string) workflows.Gate {
	return workflows.Gate{Name: "errors", Prometheus: &workflows.PromGate{URL: url, Query: query, Condition: cond}}
}

// TestGatesAgainstRealPrometheusAndAlertmanager: each gate gives pass,
// fail or inconclusive, judged on what a real Prometheus scraped and a
// real Alertmanager holds.
func TestGatesAgainstRealPrometheusAndAlertmanager(t *testing.T) {
	m, p, am := monitoring(t)
	ctx := context.Background()
	lbl := map[string]string{"app": "web"}
	m.Set("app_error_ratio", lbl, 0.001)
	m.Set("app_error_ratio", map[string]string{"app": "web", "zone": "b"}, 0.002)
	if err := p.WaitValue(ctx, `count(app_error_ratio{app="web"})`, "2"); err != nil {
		t.Fatal(err)
	}
	check := func(g workflows.Gate) workflows.GateResult { return g.Check(ctx, 5*time.Second) }

	r := check(promGate(p.URL, `app_error_ratio{app="web"}`, "< 0.01"))
	if r.Verdict != workflows.GatePass {
		t.Fatalf("healthy metric: want pass, found %s", r)
	}

	m.Set("app_error_ratio", map[string]string{"app": "web", "zone": "b"}, 0.5)
	if err := p.WaitValue(ctx, `max(app_error_ratio{app="web"})`, "0.5"); err != nil {
		t.Fatal(err)
	}
	r = check(promGate(p.URL, `app_error_ratio{app="web"}`, "< 0.01"))
	if r.Verdict != workflows.GateFail || !strings.Contains(r.Value, `zone="b"`) || !strings.Contains(r.Value, "0.5") || strings.Contains(r.Value, "0.001") {
		t.Fatalf("one bad series: want fail naming it and its value, found %s", r)
	}

	r = check(promGate(p.URL, `sum(app_error_ratio{app="web"})`, "< 1"))
	if r.Verdict != workflows.GatePass {
		t.Fatalf("an aggregate under the limit: want pass, found %s", r)
	}
	r = check(promGate(p.URL, `scalar(sum(app_error_ratio{app="web"}))`, "> 1"))
	if r.Verdict != workflows.GateFail {
		t.Fatalf("a scalar over the limit: want fail, found %s", r)
	}

	r = check(promGate(p.URL, `app_error_ratio{app="nosuch"}`, "< 0.01"))
	if r.Verdict != workflows.GateInconclusive || r.Value != "no data" {
		t.Fatalf("no series: want inconclusive, no data, found %s", r)
	}
	m.Delete("app_error_ratio", lbl)
	if err := p.WaitValue(ctx, `count(app_error_ratio{app="web",zone=""})`, ""); err != nil {
		t.Fatal(err)
	}
	r = check(promGate(p.URL, `app_error_ratio{app="web",zone=""}`, "< 0.01"))
	if r.Verdict != workflows.GateInconclusive || r.Value != "no data" {
		t.Fatalf("a series that went away: want inconclusive, no data, found %s", r)
	}

	r = check(promGate(p.URL, `sum(rate(app_error_ratio[1m]`, "< 0.01"))
	if r.Verdict != workflows.GateInconclusive || !strings.Contains(r.Detail, "400") {
		t.Fatalf("a query Prometheus rejects: want inconclusive with its error, found %s", r)
	}
	r = check(promGate(p.URL, `app_error_ratio[1m]`, "< 0.01"))
	if r.Verdict != workflows.GateInconclusive || !strings.Contains(r.Detail, "matrix") {
		t.Fatalf("a range query: want inconclusive, found %s", r)
	}
	r = check(promGate("http://127.0.0.1:9", `up`, "== 1"))
	if r.Verdict != workflows.GateInconclusive || !strings.Contains(r.Detail, "prometheus at http://127.0.0.1:9") {
		t.Fatalf("prometheus down: want inconclusive naming it, found %s", r)
	}

	page := map[string]string{"app": "web", "severity": "page"}
	ag := workflows.Gate{Name: "pages", Alertmanager: &workflows.AlertGate{URL: am.URL, Labels: page}}
	if r := check(ag); r.Verdict != workflows.GatePass {
		t.Fatalf("no alert: want pass, found %s", r)
	}
	if err := am.Fire(ctx, map[string]string{"alertname": "Other", "app": "db", "severity": "page"}); err != nil {
		t.Fatal(err)
	}
	if r := check(ag); r.Verdict != workflows.GatePass {
		t.Fatalf("an alert of another app: want pass, found %s", r)
	}
	if err := am.Fire(ctx, map[string]string{"alertname": "WebDown", "app": "web", "severity": "page", "instance": "web3"}); err != nil {
		t.Fatal(err)
	}
	r = check(ag)
	if r.Verdict != workflows.GateFail || !strings.Contains(r.Value, "WebDown") || !strings.Contains(r.Value, `instance="web3"`) {
		t.Fatalf("a matching active alert: want fail naming it, found %s", r)
	}
	if _, err := am.Silence(ctx, map[string]string{"alertname": "WebDown"}); err != nil {
		t.Fatal(err)
	}
	if r := check(ag); r.Verdict != workflows.GatePass {
		t.Fatalf("the matching alert silenced: want pass, found %s", r)
	}
	r = check(workflows.Gate{Name: "pages", Alertmanager: &workflows.AlertGate{URL: "http://127.0.0.1:9", Labels: page}})
	if r.Verdict != workflows.GateInconclusive {
		t.Fatalf("alertmanager down: want inconclusive, found %s", r)
	}
}

// TestGateBearerTokenNeverShown: the token is sent, and a service that
// echoes it back in an error does not get it printed.
func TestGateBearerTokenNeverShown(t *testing.T) {
	const tok = "s3cret-token-value"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") == "Bearer "+tok && r.URL.Query().Get("query") == "up" {
			w.Write([]byte(`{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"1"]}]}}`))
			return
		}
		w.WriteHeader(http.StatusUnauthorized)
		w.Write([]byte(`{"status":"error","errorType":"auth","error":"bad token ` + r.Header.Get("Authorization") + `"}`))
	}))
	defer srv.Close()
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte(tok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	g := promGate(srv.URL, "up", "== 1")
	g.Prometheus.BearerTokenFile = file
	if r := g.Check(context.Background(), 5*time.Second); r.Verdict != workflows.GatePass {
		t.Fatalf("want pass with the token, found %s", r)
	}
	g.Prometheus.Query = "down"
	r := g.Check(context.Background(), 5*time.Second)
	if r.Verdict != workflows.GateInconclusive || strings.Contains(r.String(), tok) || !strings.Contains(r.String(), "401") {
		t.Fatalf("want inconclusive 401 without the token, found %s", r)
	}
}

func TestGatesValidate(t *testing.T) {
	good := promGate("http://prom:9090", "up", "== 1")
	for _, tc := range []struct {
		name string
		g    workflows.Gates
		want string
	}{
		{"ok", workflows.Gates{Checks: []workflows.Gate{good}}, ""},
		{"none", workflows.Gates{}, "at least one gate"},
		{"both", workflows.Gates{Checks: []workflows.Gate{{Name: "x", Prometheus: good.Prometheus, Alertmanager: &workflows.AlertGate{URL: "http://am", Labels: map[string]string{"a": "b"}}}}}, "exactly one"},
		{"condition", workflows.Gates{Checks: []workflows.Gate{promGate("http://prom:9090", "up", "about 1")}}, "operator"},
		{"credentials", workflows.Gates{Checks: []workflows.Gate{promGate("http://u:pw@prom:9090", "up", "< 1")}}, "REDACTED"},
		{"no labels", workflows.Gates{Checks: []workflows.Gate{{Name: "a", Alertmanager: &workflows.AlertGate{URL: "http://am"}}}}, "match every alert"},
		{"dup", workflows.Gates{Checks: []workflows.Gate{good, good}}, "twice"},
	} {
		err := tc.g.Validate()
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: want %q, found %v", tc.name, tc.want, err)
		}
		if err != nil && strings.Contains(err.Error(), "pw@") {
			t.Errorf("%s: the password is shown: %v", tc.name, err)
		}
	}
}
