package signetd

import (
	"context"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/signetbus/signet/bus"
	"github.com/signetbus/signet/internal/broker/brokertest"
	"github.com/signetbus/signet/internal/keys"
	"github.com/signetbus/signet/internal/metrics/prom"
	"github.com/signetbus/signet/internal/metrics/promtest"
)

// TestPrometheusScrapesSignetd runs a real Prometheus server against a
// real signetd: it scrapes the endpoint, its queries see the requests a
// real client sent, and every rule of docs/metrics-alerts.yml evaluates
// without error on the real series.
func TestPrometheusScrapesSignetd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Prometheus server")
	}
	promBin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Skip("prometheus not installed (Debian package prometheus; CI installs it)")
	}
	srv := brokertest.Start(t)
	d := newDaemonFiles(t)
	addr := promtest.FreeAddr(t)
	d.write(t, fmt.Sprintf("nats: {urls: [%q]}", srv.ClientURL()), "metrics_listen: "+addr, "collective: met")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int)
	go func() {
		done <- Main(ctx, []string{"-c", d.config}, IO{Out: io.Discard, Err: io.Discard, Getenv: func(string) string { return "" }, Metrics: prom.Export})
	}()
	defer func() { cancel(); <-done }()
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	waitRegistered(t, nc, "met", "web1")

	dir := t.TempDir()
	rules, err := filepath.Abs("../../docs/metrics-alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`global: {scrape_interval: 1s, evaluation_interval: 1s}
rule_files: [%q]
scrape_configs:
  - job_name: signetd
    static_configs: [{targets: [%q]}]
`, rules, addr)
	promAddr, logs := promtest.Start(t, promBin, dir, cfg)

	hk, err := keys.LoadHostKey(d.hostKey)
	if err != nil {
		t.Fatal(err)
	}
	known, _ := keys.ParseKnownHosts(strings.NewReader(keys.FormatKnownHost("web1", hk.PublicKey())))
	op, err := keys.LoadSigner(filepath.Join(d.dir, "op_key"), nil)
	if err != nil {
		t.Fatal(err)
	}
	c, err := bus.NewClient(bus.ClientConfig{Conn: nc, Collective: "met", Signer: op, User: "alice", HostKeys: known})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if out, err := c.Do(context.Background(), bus.Query{Agent: "rpcutil", Action: "ping", Targets: []string{"web1"}, Timeout: 5 * time.Second}); err != nil || out.Results[0].Status != bus.ResultOK {
			t.Fatalf("ping: %v %+v", err, out)
		}
	}

	// Prometheus' own view: the scraped counter, then the rules.
	query := `sum(signetd_requests_total{agent="rpcutil",action="ping",decision="accepted"})`
	var got string
	for deadline := time.Now().Add(60 * time.Second); got != "3"; time.Sleep(250 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("Prometheus query %s = %q after 60s, want 3\n%s", query, got, logs())
		}
		got = promtest.Query(promAddr, query)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(250 * time.Millisecond) {
		n, ok, bad, err := promtest.Rules(promAddr)
		if err != nil {
			t.Fatal(err)
		}
		if len(bad) > 0 {
			t.Fatalf("rules fail on real series: %v", bad)
		}
		if n > 0 && ok == n {
			t.Logf("%d rules evaluate ok", n)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d rules evaluated ok after 30s", ok, n)
		}
	}
}
