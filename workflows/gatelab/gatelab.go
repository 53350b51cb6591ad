// Package gatelab runs the monitoring that metric gates query, for real,
// on this machine: a Prometheus (the Debian package's /usr/bin/prometheus)
// scraping a metrics endpoint the caller controls, and an Alertmanager
// (/usr/bin/prometheus-alertmanager) to post alerts and silences to. The
// end-to-end tests of the gates and `signet demo --canary` use it; no
// production code path does.
//
// Both run with short intervals (scrape and evaluation every second by
// default) so that a metric made bad is seen within seconds.
package gatelab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/signetbus/signet/internal/command"
)

// Where Debian and upstream put the binaries.
var (
	prometheusBins   = []string{"/usr/bin/prometheus", "prometheus"}
	alertmanagerBins = []string{"/usr/bin/prometheus-alertmanager", "prometheus-alertmanager", "alertmanager"}
)

func find(bins []string) string {
	for _, b := range bins {
		if p, err := exec.LookPath(b); err == nil {
			return p
		}
	}
	return ""
}

// PrometheusBin is the Prometheus binary, "" when none is installed.
func PrometheusBin() string { return find(prometheusBins) }

// AlertmanagerBin is the Alertmanager binary, "" when none is installed.
func AlertmanagerBin() string { return find(alertmanagerBins) }

// Metrics is an HTTP endpoint serving gauges in the Prometheus text
// format, set by the caller.
type Metrics struct {
	mu     sync.Mutex
	gauges map[string]float64 // `name{labels}` -> value
	srv    *http.Server
	// Addr is host:port of the endpoint (its path is /metrics).
	Addr string
}

// ServeMetrics starts a metrics endpoint on a free loopback port.
func ServeMetrics() (*Metrics, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	m := &Metrics{gauges: map[string]float64{}, Addr: l.Addr().String()}
	m.srv = &http.Server{Handler: m, ReadHeaderTimeout: 5 * time.Second}
	go m.srv.Serve(l)
	return m, nil
}

// ServeHTTP writes the gauges.
func (m *Metrics) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	m.mu.Lock()
	keys := make([]string, 0, len(m.gauges))
	for k := range m.gauges {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s %s\n", k, strconv.FormatFloat(m.gauges[k], 'g', -1, 64))
	}
	m.mu.Unlock()
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	io.WriteString(w, b.String())
}

func series(name string, labels map[string]string) string {
	if len(labels) == 0 {
		return name
	}
	var parts []string
	for k, v := range labels {
		parts = append(parts, k+"="+strconv.Quote(v))
	}
	slices.Sort(parts)
	return name + "{" + strings.Join(parts, ",") + "}"
}

// Set sets a gauge (name and labels) to v.
func (m *Metrics) Set(name string, labels map[string]string, v float64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.gauges[series(name, labels)] = v
}

// Delete removes a gauge: after the next scrape Prometheus marks it stale
// and a query for it returns no data.
func (m *Metrics) Delete(name string, labels map[string]string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.gauges, series(name, labels))
}

// Close stops the endpoint.
func (m *Metrics) Close() error { return m.srv.Close() }

// daemon is a process started in its own group.
type daemon struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
	log  *os.File
}

func start(argv []string, logPath string) (*daemon, error) {
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = slices.Clone(command.DefaultEnv)
	cmd.Dir = "/"
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("start %s: %w", filepath.Base(argv[0]), err)
	}
	d := &daemon{cmd: cmd, done: make(chan struct{}), log: lf}
	go func() {
		d.err = cmd.Wait()
		close(d.done)
	}()
	return d, nil
}

func (d *daemon) stop() error {
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
		<-d.done
	}
	d.log.Close()
	return nil
}

// waitReady polls url until it answers 200, the daemon exits or ctx ends.
func waitReady(ctx context.Context, d *daemon, name, url, logPath string) error {
	c := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(60 * time.Second)
	for {
		if resp, err := c.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-d.done:
			return fmt.Errorf("gatelab: %s exited at start (%v); see %s", name, d.err, logPath)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("gatelab: %s at %s not ready after 60s; see %s", name, url, logPath)
		}
	}
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// Prometheus is a running Prometheus.
type Prometheus struct {
	// URL is its base URL, http://127.0.0.1:PORT.
	URL string
	d   *daemon
}

// PrometheusOptions configure StartPrometheus.
type PrometheusOptions struct {
	// Dir holds the config, the data and prometheus.log. Required.
	Dir string
	// Targets are host:port metrics endpoints scraped as job "gatelab".
	Targets []string
	// Interval is the scrape and evaluation interval; default 1s.
	Interval time.Duration
}

// StartPrometheus starts Prometheus and waits until it is ready.
func StartPrometheus(ctx context.Context, o PrometheusOptions) (*Prometheus, error) {
	bin := PrometheusBin()
	if bin == "" {
		return nil, errors.New("gatelab: prometheus is not installed (apt install prometheus)")
	}
	if o.Interval <= 0 {
		o.Interval = time.Second
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, err
	}
	targets, _ := json.Marshal(o.Targets)
	cfg := fmt.Sprintf("global:\n  scrape_interval: %s\n  evaluation_interval: %s\n  scrape_timeout: %s\nscrape_configs:\n  - job_name: gatelab\n    static_configs:\n      - targets: %s\n",
		o.Interval, o.Interval, o.Interval, targets)
	cfgPath := filepath.Join(o.Dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	logPath := filepath.Join(o.Dir, "prometheus.log")
	d, err := start([]string{bin, "--config.file=" + cfgPath, "--storage.tsdb.path=" + filepath.Join(o.Dir, "data"),
		"--web.listen-address=" + addr, "--log.level=warn"}, logPath)
	if err != nil {
		return nil, fmt.Errorf("gatelab: %w", err)
	}
	p := &Prometheus{URL: "http://" + addr, d: d}
	if err := waitReady(ctx, d, "prometheus", p.URL+"/-/ready", logPath); err != nil {
		d.stop()
		return nil, err
	}
	return p, nil
}

// Query runs an instant query and returns the values of the series, for
// a test to wait until Prometheus has scraped what it set.
func (p *Prometheus) Query(ctx context.Context, q string) ([]string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.URL+"/api/v1/query?query="+url.QueryEscape(q), nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var ans struct {
		Data struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&ans); err != nil {
		return nil, err
	}
	var out []string
	for _, r := range ans.Data.Result {
		s, _ := r.Value[1].(string)
		out = append(out, s)
	}
	return out, nil
}

// WaitValue waits until query q gives exactly want ("" for no data).
func (p *Prometheus) WaitValue(ctx context.Context, q, want string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		got, err := p.Query(ctx, q)
		if err == nil && strings.Join(got, ",") == want {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("prometheus: %s: want %q, found %q (%v)", q, want, got, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Stop stops Prometheus.
func (p *Prometheus) Stop() error { return p.d.stop() }

// Alertmanager is a running Alertmanager, clustering off.
type Alertmanager struct {
	// URL is its base URL.
	URL string
	d   *daemon
}

// StartAlertmanager starts Alertmanager in dir and waits until it is
// ready.
func StartAlertmanager(ctx context.Context, dir string) (*Alertmanager, error) {
	bin := AlertmanagerBin()
	if bin == "" {
		return nil, errors.New("gatelab: alertmanager is not installed (apt install prometheus-alertmanager)")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	cfg := filepath.Join(dir, "alertmanager.yml")
	if err := os.WriteFile(cfg, []byte("route:\n  receiver: \"null\"\nreceivers:\n  - name: \"null\"\n"), 0o644); err != nil {
		return nil, err
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "alertmanager.log")
	d, err := start([]string{bin, "--config.file=" + cfg, "--storage.path=" + filepath.Join(dir, "data"),
		"--web.listen-address=" + addr, "--cluster.listen-address=", "--log.level=warn"}, logPath)
	if err != nil {
		return nil, fmt.Errorf("gatelab: %w", err)
	}
	a := &Alertmanager{URL: "http://" + addr, d: d}
	if err := waitReady(ctx, d, "alertmanager", a.URL+"/-/ready", logPath); err != nil {
		d.stop()
		return nil, err
	}
	return a, nil
}

// Stop stops Alertmanager.
func (a *Alertmanager) Stop() error { return a.d.stop() }

func post(ctx context.Context, to string, body any, out any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, to, strings.NewReader(string(b)))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	rb, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("POST %s: %d: %s", to, resp.StatusCode, rb)
	}
	if out != nil {
		return json.Unmarshal(rb, out)
	}
	return nil
}

// Fire posts an alert with these labels through the v2 API, active for
// an hour.
func (a *Alertmanager) Fire(ctx context.Context, labels map[string]string) error {
	now := time.Now().UTC()
	return post(ctx, a.URL+"/api/v2/alerts", []map[string]any{{"labels": labels, "startsAt": now.Format(time.RFC3339), "endsAt": now.Add(time.Hour).Format(time.RFC3339)}}, nil)
}

// Resolve posts the alert again as ended.
func (a *Alertmanager) Resolve(ctx context.Context, labels map[string]string) error {
	now := time.Now().UTC()
	return post(ctx, a.URL+"/api/v2/alerts", []map[string]any{{"labels": labels, "startsAt": now.Add(-time.Minute).Format(time.RFC3339), "endsAt": now.Add(-time.Second).Format(time.RFC3339)}}, nil)
}

// Silence silences the alerts carrying labels for an hour and returns the
// silence id.
func (a *Alertmanager) Silence(ctx context.Context, labels map[string]string) (string, error) {
	var ms []map[string]any
	for k, v := range labels {
		ms = append(ms, map[string]any{"name": k, "value": v, "isRegex": false, "isEqual": true})
	}
	now := time.Now().UTC()
	var out struct {
		SilenceID string `json:"silenceID"`
	}
	err := post(ctx, a.URL+"/api/v2/silences", map[string]any{"matchers": ms, "startsAt": now.Format(time.RFC3339), "endsAt": now.Add(time.Hour).Format(time.RFC3339),
		"createdBy": "gatelab", "comment": "test silence"}, &out)
	return out.SilenceID, err
}

// Expire ends a silence.
func (a *Alertmanager) Expire(ctx context.Context, id string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, a.URL+"/api/v2/silence/"+url.PathEscape(id), nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("DELETE silence %s: %d", id, resp.StatusCode)
	}
	return nil
}
