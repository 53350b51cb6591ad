package workflows

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/signetbus/signet/internal/httpjson"
	"github.com/signetbus/signet/internal/lazyre"
)

// Gate verdicts.
const (
	// GatePass: the gate holds.
	GatePass = "pass"
	// GateFail: the gate does not hold; the run stops, failed.
	GateFail = "fail"
	// GateInconclusive: the gate could not be judged (no data, a query
	// error, a timeout, an HTTP error). The run waits and asks again; it
	// never counts as a pass.
	GateInconclusive = "inconclusive"
)

// Gates are a run's metric gates: checks of the fleet's monitoring that
// must hold before each batch after the first, and all through a canary's
// bake. In an app file:
//
//	gates:
//	  interval: 15s
//	  inconclusive_for: 5m
//	  checks:
//	    - name: error-rate
//	      prometheus:
//	        url: http://prometheus:9090
//	        query: sum(rate(http_errors_total{app="middleware"}[2m]))
//	        condition: "< 0.5"
//	    - name: no-page
//	      alertmanager:
//	        url: http://alertmanager:9093
//	        labels: {app: middleware, severity: page}
type Gates struct {
	// Interval is the wait between two checks of the gates while a gate is
	// inconclusive and during a canary's bake; default 30s.
	Interval time.Duration `yaml:"interval,omitempty" json:"interval,omitempty"`
	// Timeout bounds one query; default 10s. A query that times out is
	// inconclusive.
	Timeout time.Duration `yaml:"timeout,omitempty" json:"timeout,omitempty"`
	// InconclusiveFor is how long the gates may stay inconclusive before
	// the run halts, stopped and resumable with --resume; default 10m.
	InconclusiveFor time.Duration `yaml:"inconclusive_for,omitempty" json:"inconclusive_for,omitempty"`
	// Checks are the gates; every one must pass.
	Checks []Gate `yaml:"checks" json:"checks"`
}

// Gate is one check: exactly one of Prometheus and Alertmanager.
type Gate struct {
	// Name names the gate in events and errors: lowercase letters, digits,
	// '_' and '-'. Required.
	Name string `yaml:"name" json:"name"`
	// Prometheus is a query with a condition on every series it returns.
	Prometheus *PromGate `yaml:"prometheus,omitempty" json:"prometheus,omitempty"`
	// Alertmanager passes while no active alert matches its labels.
	Alertmanager *AlertGate `yaml:"alertmanager,omitempty" json:"alertmanager,omitempty"`
}

// PromGate is an instant query to Prometheus's HTTP API
// (/api/v1/query). Every series of the answer must meet Condition; an
// empty answer is "no data", inconclusive.
type PromGate struct {
	// URL is Prometheus's base URL, such as http://prometheus:9090 (no
	// credentials in it). Required.
	URL string `yaml:"url" json:"url"`
	// Query is the PromQL expression; it must give an instant vector or a
	// scalar. Required.
	Query string `yaml:"query" json:"query"`
	// Condition is an operator and a number: "< 0.01", ">= 1", "== 0".
	// Operators: < <= > >= == !=. Required.
	Condition string `yaml:"condition" json:"condition"`
	// BearerTokenFile holds a bearer token sent with each query (read for
	// each query, never shown).
	BearerTokenFile string `yaml:"bearer_token_file,omitempty" json:"bearer_token_file,omitempty"`
}

// AlertGate fails while Alertmanager (API v2, /api/v2/alerts) holds an
// active alert carrying every one of Labels; silenced and inhibited
// alerts do not count.
type AlertGate struct {
	// URL is Alertmanager's base URL, such as http://alertmanager:9093.
	// Required.
	URL string `yaml:"url" json:"url"`
	// Labels an alert must all carry, with these values, to fail the gate.
	// At least one.
	Labels map[string]string `yaml:"labels" json:"labels"`
	// BearerTokenFile holds a bearer token sent with each query.
	BearerTokenFile string `yaml:"bearer_token_file,omitempty" json:"bearer_token_file,omitempty"`
}

// Defaults of Gates.
const (
	DefaultGateInterval        = 30 * time.Second
	DefaultGateTimeout         = 10 * time.Second
	DefaultGateInconclusiveFor = 10 * time.Minute
)

var (
	conditionRE = lazyre.New(`^\s*(<=|>=|==|!=|<|>)\s*([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*$`)
	labelNameRE = lazyre.New(`^[a-zA-Z_][a-zA-Z0-9_]{0,127}$`)
)

// Validate checks the gates.
func (g *Gates) Validate() error {
	if g == nil {
		return nil
	}
	if g.Interval < 0 || g.Timeout < 0 || g.InconclusiveFor < 0 {
		return errors.New("gates: interval, timeout and inconclusive_for must be positive durations")
	}
	if len(g.Checks) == 0 {
		return errors.New("gates: checks: at least one gate is required (or leave gates out)")
	}
	seen := map[string]bool{}
	for i, c := range g.Checks {
		if !ValidName(c.Name) {
			return fmt.Errorf("gates: check %d: name: want lowercase letters, digits, '_' or '-', found %q", i+1, c.Name)
		}
		if seen[c.Name] {
			return fmt.Errorf("gates: check %s: the name is used twice", c.Name)
		}
		seen[c.Name] = true
		if err := c.validate(); err != nil {
			return fmt.Errorf("gates: check %s: %w", c.Name, err)
		}
	}
	return nil
}

func (c Gate) validate() error {
	switch {
	case c.Prometheus != nil && c.Alertmanager != nil, c.Prometheus == nil && c.Alertmanager == nil:
		return errors.New("want exactly one of prometheus and alertmanager")
	case c.Prometheus != nil:
		p := c.Prometheus
		if err := checkBaseURL(p.URL); err != nil {
			return fmt.Errorf("prometheus.url: %w", err)
		}
		if strings.TrimSpace(p.Query) == "" || len(p.Query) > 4096 {
			return errors.New("prometheus.query: want a PromQL expression of at most 4096 bytes")
		}
		if _, _, err := parseCondition(p.Condition); err != nil {
			return fmt.Errorf("prometheus.condition: %w", err)
		}
	default:
		a := c.Alertmanager
		if err := checkBaseURL(a.URL); err != nil {
			return fmt.Errorf("alertmanager.url: %w", err)
		}
		if len(a.Labels) == 0 {
			return errors.New("alertmanager.labels: at least one label is required: an empty set would match every alert")
		}
		for k, v := range a.Labels {
			if !labelNameRE.MatchString(k) || v == "" || len(v) > 1024 || strings.ContainsAny(v, "\n\r") {
				return fmt.Errorf("alertmanager.labels: want label names of letters, digits and '_' with one-line values, found %q: %q", k, v)
			}
		}
	}
	return nil
}

func checkBaseURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.RawQuery != "" {
		return fmt.Errorf("want an http(s) URL without credentials or query, found %q", redactURL(s))
	}
	return nil
}

// redactURL hides a password put in a URL by mistake.
func redactURL(s string) string {
	if u, err := url.Parse(s); err == nil && u.User != nil {
		u.User = url.User("REDACTED")
		return u.String()
	}
	return s
}

// parseCondition splits "< 0.01" into its operator and number.
func parseCondition(s string) (string, float64, error) {
	m := conditionRE.FindStringSubmatch(s)
	if m == nil {
		return "", 0, fmt.Errorf("want an operator (< <= > >= == !=) and a number, such as \"< 0.01\", found %q", s)
	}
	v, err := strconv.ParseFloat(m[2], 64)
	if err != nil {
		return "", 0, fmt.Errorf("want a number, found %q", m[2])
	}
	return m[1], v, nil
}

func holds(op string, v, limit float64) bool {
	switch op {
	case "<":
		return v < limit
	case "<=":
		return v <= limit
	case ">":
		return v > limit
	case ">=":
		return v >= limit
	case "==":
		return v == limit
	case "!=":
		return v != limit
	}
	return false
}

// GateResult is one check of one gate.
type GateResult struct {
	Gate string `json:"gate"`
	// Verdict is pass, fail or inconclusive.
	Verdict string `json:"verdict"`
	// Query is what was asked: the PromQL, or the Alertmanager matchers.
	Query string `json:"query"`
	// Value is what was found: "0.12", "{instance=\"web3\"} 0.12", "no
	// data", the alerts that fire.
	Value string `json:"value,omitempty"`
	// Detail says why, in words: the condition missed, the query error.
	Detail string `json:"detail,omitempty"`
}

func (r GateResult) String() string {
	s := fmt.Sprintf("gate %s %s: %s", r.Gate, r.Verdict, r.Query)
	if r.Value != "" {
		s += ": " + r.Value
	}
	if r.Detail != "" {
		s += " (" + r.Detail + ")"
	}
	return s
}

// Check asks every gate once, in order, and returns the results.
func (g *Gates) Check(ctx context.Context) []GateResult {
	out := make([]GateResult, 0, len(g.Checks))
	for _, c := range g.Checks {
		out = append(out, c.Check(ctx, g.timeout()))
	}
	return out
}

func (g *Gates) interval() time.Duration {
	if g.Interval > 0 {
		return g.Interval
	}
	return DefaultGateInterval
}

func (g *Gates) timeout() time.Duration {
	if g.Timeout > 0 {
		return g.Timeout
	}
	return DefaultGateTimeout
}

func (g *Gates) inconclusiveFor() time.Duration {
	if g.InconclusiveFor > 0 {
		return g.InconclusiveFor
	}
	return DefaultGateInconclusiveFor
}

// Check asks the gate once; timeout bounds the query.
func (c Gate) Check(ctx context.Context, timeout time.Duration) GateResult {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var r GateResult
	var tokenFile string
	switch {
	case c.Prometheus != nil:
		r, tokenFile = c.Prometheus.check(ctx, timeout), c.Prometheus.BearerTokenFile
	case c.Alertmanager != nil:
		r, tokenFile = c.Alertmanager.check(ctx, timeout), c.Alertmanager.BearerTokenFile
	default:
		r = GateResult{Verdict: GateInconclusive, Detail: "neither prometheus nor alertmanager is set"}
	}
	r.Gate = c.Name
	return scrubToken(r, tokenFile)
}

// scrubToken removes the bearer token from a result, should a service
// echo it back in an error: a result is printed and logged.
func scrubToken(r GateResult, tokenFile string) GateResult {
	if tokenFile == "" {
		return r
	}
	b, err := os.ReadFile(tokenFile)
	tok := strings.TrimSpace(string(b))
	if err != nil || len(tok) < 4 {
		return r
	}
	rp := strings.NewReplacer(tok, "REDACTED")
	r.Query, r.Value, r.Detail = rp.Replace(r.Query), rp.Replace(r.Value), rp.Replace(r.Detail)
	return r
}

// client is the one HTTP JSON client of a gate: one attempt per check
// (the gate's interval is the retry), and the bearer token read from its
// file for each request.
func gateClient(service, base, tokenFile string, timeout time.Duration) *httpjson.Client {
	c := &httpjson.Client{HTTP: &http.Client{Timeout: timeout}, Service: service, Where: service + " at " + base, Attempts: 1}
	if tokenFile != "" {
		c.Auth = func(req *http.Request) error {
			b, err := os.ReadFile(tokenFile)
			if err != nil {
				return fmt.Errorf("bearer token file: %w", err)
			}
			tok := strings.TrimSpace(string(b))
			if tok == "" {
				return fmt.Errorf("bearer token file %s is empty", tokenFile)
			}
			req.Header.Set("Authorization", "Bearer "+tok)
			return nil
		}
	}
	return c
}

func inconclusive(query, value string, err error) GateResult {
	return GateResult{Verdict: GateInconclusive, Query: query, Value: value, Detail: errText(err)}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "timed out: " + err.Error()
	}
	return err.Error()
}

func (p *PromGate) check(ctx context.Context, timeout time.Duration) GateResult {
	query := p.Query + " " + strings.TrimSpace(p.Condition)
	op, limit, err := parseCondition(p.Condition)
	if err != nil {
		return inconclusive(query, "", err)
	}
	base := strings.TrimRight(p.URL, "/")
	var ans struct {
		Status    string `json:"status"`
		ErrorType string `json:"errorType"`
		Error     string `json:"error"`
		Data      struct {
			ResultType string          `json:"resultType"`
			Result     json.RawMessage `json:"result"`
		} `json:"data"`
	}
	c := gateClient("prometheus", base, p.BearerTokenFile, timeout)
	c.Message = func(b []byte, _ *http.Request) string {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			return httpjson.Message([]byte(`{"message":` + strconv.Quote(e.Error) + `}`))
		}
		return httpjson.Message(b)
	}
	err = c.Do(ctx, httpjson.Call{Op: "query", Method: http.MethodGet, URL: base + "/api/v1/query?" + url.Values{"query": {p.Query}}.Encode(), Out: &ans})
	if err != nil {
		return inconclusive(query, "", err)
	}
	if ans.Status != "success" {
		return inconclusive(query, "", fmt.Errorf("prometheus: query: %s: %s", ans.ErrorType, ans.Error))
	}
	type sample struct {
		labels string
		value  string
	}
	var samples []sample
	switch ans.Data.ResultType {
	case "vector":
		var vec []struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"`
		}
		if err := json.Unmarshal(ans.Data.Result, &vec); err != nil {
			return inconclusive(query, "", fmt.Errorf("prometheus: decode vector: %w", err))
		}
		for _, s := range vec {
			v, _ := s.Value[1].(string)
			samples = append(samples, sample{labels: formatLabels(s.Metric), value: v})
		}
	case "scalar":
		var sc [2]any
		if err := json.Unmarshal(ans.Data.Result, &sc); err != nil {
			return inconclusive(query, "", fmt.Errorf("prometheus: decode scalar: %w", err))
		}
		v, _ := sc[1].(string)
		samples = append(samples, sample{value: v})
	default:
		return inconclusive(query, "", fmt.Errorf("want an instant vector or a scalar, found a %s", ans.Data.ResultType))
	}
	if len(samples) == 0 {
		return GateResult{Verdict: GateInconclusive, Query: query, Value: "no data", Detail: "the query returned no series"}
	}
	var bad, odd, vals []string
	for _, s := range samples {
		shown := strings.TrimSpace(s.labels + " " + s.value)
		vals = append(vals, shown)
		v, err := strconv.ParseFloat(s.value, 64)
		switch {
		case err != nil || math.IsNaN(v):
			odd = append(odd, shown)
		case !holds(op, v, limit):
			bad = append(bad, shown)
		}
	}
	switch {
	case len(bad) > 0:
		return GateResult{Verdict: GateFail, Query: query, Value: firstFew(bad), Detail: fmt.Sprintf("%d of %d series miss %s", len(bad), len(samples), strings.TrimSpace(p.Condition))}
	case len(odd) > 0:
		return GateResult{Verdict: GateInconclusive, Query: query, Value: firstFew(odd), Detail: "not a number (no traffic?)"}
	}
	return GateResult{Verdict: GatePass, Query: query, Value: firstFew(vals)}
}

func firstFew(s []string) string {
	if len(s) > 3 {
		return strings.Join(s[:3], ", ") + fmt.Sprintf(" and %d more", len(s)-3)
	}
	return strings.Join(s, ", ")
}

func formatLabels(m map[string]string) string {
	if len(m) == 0 {
		return ""
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		if k != "__name__" { // the query names it
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return ""
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, k+"="+strconv.Quote(m[k]))
	}
	return "{" + strings.Join(parts, ",") + "}"
}

// matchers are the gate's labels as Alertmanager filter matchers,
// name="value", sorted.
func (a *AlertGate) matchers() []string {
	out := make([]string, 0, len(a.Labels))
	for k, v := range a.Labels {
		v = strings.ReplaceAll(v, `\`, `\\`)
		v = strings.ReplaceAll(v, `"`, `\"`)
		out = append(out, k+`="`+v+`"`)
	}
	slices.Sort(out)
	return out
}

func (a *AlertGate) check(ctx context.Context, timeout time.Duration) GateResult {
	ms := a.matchers()
	query := "active alerts matching {" + strings.Join(ms, ",") + "}"
	base := strings.TrimRight(a.URL, "/")
	q := url.Values{"active": {"true"}, "silenced": {"false"}, "inhibited": {"false"}, "unprocessed": {"true"}, "filter": ms}
	var alerts []struct {
		Labels map[string]string `json:"labels"`
		Status struct {
			State string `json:"state"`
		} `json:"status"`
	}
	err := gateClient("alertmanager", base, a.BearerTokenFile, timeout).Do(ctx, httpjson.Call{Op: "list alerts", Method: http.MethodGet, URL: base + "/api/v2/alerts?" + q.Encode(), Out: &alerts})
	if err != nil {
		return inconclusive(query, "", err)
	}
	var firing []string
	for _, al := range alerts {
		if al.Status.State == "suppressed" {
			continue
		}
		match := true
		for k, v := range a.Labels {
			if al.Labels[k] != v {
				match = false
			}
		}
		if !match {
			continue // Alertmanager filtered; trust but verify
		}
		rest := make(map[string]string, len(al.Labels))
		for k, v := range al.Labels {
			if k != "alertname" { // shown before the labels
				rest[k] = v
			}
		}
		firing = append(firing, al.Labels["alertname"]+formatLabels(rest))
	}
	if len(firing) > 0 {
		return GateResult{Verdict: GateFail, Query: query, Value: firstFew(firing), Detail: fmt.Sprintf("%d active alerts", len(firing))}
	}
	return GateResult{Verdict: GatePass, Query: query, Value: "no active alert"}
}

// GateError is a gate that failed: the run stopped, failed.
type GateError struct {
	// When says where the run was: "before batch 3", "bake of the canary".
	When   string
	Result GateResult
}

func (e *GateError) Error() string {
	return fmt.Sprintf("gate %s failed %s: %s: found %s (%s)", e.Result.Gate, e.When, e.Result.Query, e.Result.Value, e.Result.Detail)
}

// GateHaltError says the gates stayed inconclusive longer than
// inconclusive_for: the run halted, stopped and resumable.
type GateHaltError struct {
	Run     string
	When    string
	For     time.Duration
	Results []GateResult
}

func (e *GateHaltError) Error() string {
	var s []string
	for _, r := range e.Results {
		if r.Verdict == GateInconclusive {
			s = append(s, r.String())
		}
	}
	return fmt.Sprintf("gates inconclusive for %s %s, so the run halted (resume with run id %s): %s", e.For, e.When, e.Run, strings.Join(s, "; "))
}

// Unwrap makes a halt a soft stop: errors.Is(err, ErrStopped) holds.
func (e *GateHaltError) Unwrap() error { return ErrStopped }
