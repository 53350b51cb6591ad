package signetd

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"golang.org/x/crypto/ssh"

	"github.com/signetbus/signet/bus"
	"github.com/signetbus/signet/internal/broker/brokertest"
	"github.com/signetbus/signet/internal/keys"
	"github.com/signetbus/signet/internal/keys/keytest"
	"github.com/signetbus/signet/internal/metrics/prom"
	"github.com/signetbus/signet/internal/metrics/promtest"
)

// scrape fetches and parses http://addr/metrics.
func scrape(t *testing.T, addr string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("scrape: %s: %s", resp.Status, b)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse scrape: %v", err)
	}
	return fams
}

// value is the value of the series of fams[name] whose labels include
// want ("k=v" pairs); 0 when there is none.
func value(fams map[string]*dto.MetricFamily, name string, want ...string) float64 {
	f, ok := fams[name]
	if !ok {
		return 0
	}
	for _, m := range f.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		match := true
		for _, w := range want {
			k, v, _ := strings.Cut(w, "=")
			if labels[k] != v {
				match = false
			}
		}
		if !match {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue()
		case m.Gauge != nil:
			return m.GetGauge().GetValue()
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount())
		}
	}
	return 0
}

// TestMetricsCountSignedRequests runs a real signetd with metrics_listen
// against a real broker, sends it real signed requests (one that runs, one
// whose plugin fails, one the policy denies, one from an untrusted key)
// and scrapes its real HTTP endpoint: the counters move by exactly what
// was sent.
func TestMetricsCountSignedRequests(t *testing.T) {
	srv := brokertest.Start(t)
	d := newDaemonFiles(t)
	writeFile(t, d.policy, "rules:\n  - roles: [admin]\n    allow: [\"rpcutil.ping\", \"rpcutil.get_fact\"]\n", 0o644)
	addr := promtest.FreeAddr(t)
	d.write(t, fmt.Sprintf("nats: {urls: [%q]}", srv.ClientURL()), "metrics_listen: "+addr, "collective: met")

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int)
	var errb strings.Builder
	go func() {
		done <- Main(ctx, []string{"-c", d.config, "--log-format", "json"}, IO{Out: io.Discard, Err: &lockedWriter{w: &errb}, Getenv: func(string) string { return "" }, Metrics: prom.Export})
	}()
	t.Cleanup(func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("signetd exited %d: %s", code, errb.String())
		}
	})

	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	waitRegistered(t, nc, "met", "web1")
	hk, err := keys.LoadHostKey(d.hostKey)
	if err != nil {
		t.Fatal(err)
	}
	known, err := keys.ParseKnownHosts(strings.NewReader(keys.FormatKnownHost("web1", hk.PublicKey())))
	if err != nil {
		t.Fatal(err)
	}
	op, err := keys.LoadSigner(filepath.Join(d.dir, "op_key"), nil)
	if err != nil {
		t.Fatal(err)
	}
	before := scrape(t, addr)
	if v := value(before, "signetd_registry_registered"); v != 1 {
		t.Errorf("signetd_registry_registered = %v, want 1 once the host is in the registry", v)
	}
	if v := value(before, "signetd_broker_connected"); v != 1 {
		t.Errorf("signetd_broker_connected = %v, want 1", v)
	}
	if v := value(before, "signetd_build_info", fmt.Sprintf("protocol=%d", bus.ProtocolVersion)); v != 1 {
		t.Errorf("signetd_build_info{protocol=%d} = %v, want 1", bus.ProtocolVersion, v)
	}

	send := func(signer ssh.Signer, action string, params map[string]any, want bus.ResultStatus) {
		t.Helper()
		c, err := bus.NewClient(bus.ClientConfig{Conn: nc, Collective: "met", Signer: signer, User: "alice", HostKeys: known})
		if err != nil {
			t.Fatal(err)
		}
		out, err := c.Do(context.Background(), bus.Query{Agent: "rpcutil", Action: action, Params: params, Targets: []string{"web1"}, Timeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		if len(out.Results) != 1 || out.Results[0].Status != want {
			t.Fatalf("rpcutil %s: %+v, want %s", action, out.Results, want)
		}
	}
	send(op, "ping", nil, bus.ResultOK)
	send(op, "ping", nil, bus.ResultOK)
	send(op, "get_fact", map[string]any{"fact": "nosuch"}, bus.ResultFailed)
	send(op, "inventory", nil, bus.ResultRefused)
	send(keytest.Signer(t), "ping", nil, bus.ResultRefused)
	after := scrape(t, addr)

	delta := func(name string, labels ...string) float64 {
		return value(after, name, labels...) - value(before, name, labels...)
	}
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"signetd_requests_total", []string{"agent=rpcutil", "action=ping", "decision=accepted"}, 2},
		{"signetd_requests_total", []string{"agent=rpcutil", "action=get_fact", "decision=accepted"}, 1},
		{"signetd_requests_total", []string{"agent=rpcutil", "action=inventory", "decision=refused"}, 1},
		// The untrusted key is not a principal: no agent label for it.
		{"signetd_requests_total", []string{"agent=", "action=", "decision=refused"}, 1},
		{"signetd_refusals_total", []string{"reason=denied"}, 1},
		{"signetd_refusals_total", []string{"reason=untrusted"}, 1},
		{"signetd_plugin_errors_total", []string{"agent=rpcutil", "action=get_fact", "code=failed"}, 1},
		{"signetd_action_duration_seconds", []string{"agent=rpcutil", "action=ping"}, 2},
		{"signetd_action_duration_seconds", []string{"agent=rpcutil", "action=get_fact"}, 1},
	} {
		if got := delta(c.name, c.labels...); got != c.want {
			t.Errorf("%s%v moved by %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	// The audit log is shipped: the broker acknowledges every line soon.
	deadline := time.Now().Add(10 * time.Second)
	for {
		m := scrape(t, addr)
		w, s := value(m, "signetd_audit_written_seq"), value(m, "signetd_audit_shipped_seq")
		if w > 0 && w == s && value(m, "signetd_audit_unshipped_records") == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("audit shipping: written seq %v, shipped %v, unshipped %v after 10s", w, s, value(m, "signetd_audit_unshipped_records"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	// A dedicated registry: the Go and process collectors are there, and
	// nothing from the client library's global default registry leaks in
	// (promhttp's own handler metrics live only there).
	if _, ok := after["go_goroutines"]; !ok {
		t.Errorf("no go_goroutines in the scrape")
	}
	if _, ok := after["promhttp_metric_handler_requests_total"]; ok {
		t.Errorf("the scrape serves the global default registry")
	}
	lintScrape(t, addr)
}

// lintScrape runs Prometheus' own linter (promtool check metrics) over a
// scrape: names, units, help texts and types as Prometheus expects them.
func lintScrape(t *testing.T, addr string) {
	t.Helper()
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not installed (Debian package prometheus; CI installs it): the scrape is not linted")
	}
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = resp.Body
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

// TestMetricsListenMustBeLoopback: a metrics address beyond this machine is
// refused by --check and by start-up alike, unless explicitly allowed.
func TestMetricsListenMustBeLoopback(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:9464", ":9464", "10.1.2.3:9464", "metrics.example.com:9464"} {
		d := newDaemonFiles(t)
		d.write(t, "metrics_listen: "+strconvQuote(addr))
		for _, args := range [][]string{{"-c", d.config, "--check"}, {"-c", d.config}} {
			code, _, errOut := runDaemon(t, 10*time.Second, args...)
			if code != ExitUsage || !strings.Contains(errOut, "metrics_listen: metrics: listen address is not a loopback address") {
				t.Errorf("%s %v: exit %d, %s", addr, args[2:], code, errOut)
			}
		}
	}
	// Without an exporter (signetd run inside signet's tests) a config
	// that asks for metrics does not start.
	d := newDaemonFiles(t)
	d.write(t, "metrics_listen: "+promtest.FreeAddr(t))
	if code, _, errOut := runDaemon(t, 10*time.Second, "-c", d.config); code != ExitFailed || !strings.Contains(errOut, "this build has no metrics exporter") {
		t.Errorf("no exporter: exit %d: %s", code, errOut)
	}
	d = newDaemonFiles(t)
	d.write(t, "metrics_listen: 0.0.0.0:9464", "metrics_allow_remote: true")
	if code, _, errOut := runDaemon(t, 10*time.Second, "-c", d.config, "--check"); code != 0 {
		t.Errorf("metrics_allow_remote: exit %d: %s", code, errOut)
	}
}

func strconvQuote(s string) string { return fmt.Sprintf("%q", s) }

// waitRegistered waits until identity is in collective's registry.
func waitRegistered(t *testing.T, nc *nats.Conn, collective, identity string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		if reg, err := bus.OpenRegistry(ctx, nc, collective); err == nil {
			if l, err := reg.List(ctx); err == nil {
				for _, r := range l {
					if r.Identity == identity {
						cancel()
						return
					}
				}
			}
		}
		cancel()
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s did not register in %s", identity, collective)
}

// lockedWriter serialises writes from signetd's goroutines.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
