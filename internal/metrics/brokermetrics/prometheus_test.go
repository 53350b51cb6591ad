package brokermetrics

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func promGet(addr, path string, v any) error {
	resp, err := http.Get("http://" + addr + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", path, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// promQuery is the value of an instant query with one result; "" when
// there is no result (yet).
func promQuery(addr, q string) string {
	var r struct {
		Data struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if promGet(addr, "/api/v1/query?query="+url.QueryEscape(q), &r) != nil || len(r.Data.Result) != 1 {
		return ""
	}
	s, _ := r.Data.Result[0].Value[1].(string)
	return s
}

// alertState is the state (pending, firing) of alert name; "" when inactive.
func alertState(addr, name string) string {
	var r struct {
		Data struct {
			Alerts []struct {
				Labels map[string]string `json:"labels"`
				State  string            `json:"state"`
			} `json:"alerts"`
		} `json:"data"`
	}
	if promGet(addr, "/api/v1/alerts", &r) != nil {
		return ""
	}
	for _, a := range r.Data.Alerts {
		if a.Labels["alertname"] == name {
			return a.State
		}
	}
	return ""
}

// TestPrometheusScrapesBroker runs a real Prometheus server against a real
// `signet broker --metrics-listen` process (the signet binary built from
// this tree), configured as a DR broker whose leafnode hub is not there:
// Prometheus' queries see a real client's messages and the registry's
// entries, every rule of docs/metrics-alerts.yml evaluates without error,
// the leafnode alert goes pending, and once the broker process is killed
// the broker-down alert does.
func TestPrometheusScrapesBroker(t *testing.T) {
	if testing.Short() {
		t.Skip("builds signet and starts a Prometheus server")
	}
	promBin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Skip("prometheus not installed (Debian package prometheus; CI installs it)")
	}
	dir := t.TempDir()
	signet := filepath.Join(dir, "signet")
	if out, err := exec.Command("go", "build", "-o", signet, "../../../cmd/signet").CombinedOutput(); err != nil {
		t.Fatalf("build signet: %v\n%s", err, out)
	}
	natsAddr, maddr, hub := freeAddr(t), freeAddr(t), freeAddr(t)
	_, natsPort, _ := net.SplitHostPort(natsAddr)
	broker := exec.Command(signet, "broker", "--port", natsPort, "--store", filepath.Join(dir, "store"),
		"--metrics-listen", maddr, "--domain", "dr", "--leafnode-remote", "nats-leaf://"+hub)
	blog, err := os.Create(filepath.Join(dir, "broker.log"))
	if err != nil {
		t.Fatal(err)
	}
	broker.Stdout, broker.Stderr = blog, blog
	if err := broker.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	defer func() {
		if !killed {
			broker.Process.Kill()
			broker.Wait()
		}
	}()
	brokerLog := func() string { b, _ := os.ReadFile(blog.Name()); return string(b) }

	var nc *nats.Conn
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if nc, err = nats.Connect("nats://" + natsAddr); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("signet broker did not come up: %v\n%s", err, brokerLog())
		}
	}
	defer nc.Close()
	js, err := jetstream.NewWithDomain(nc, "dr")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "signet_registry_lab", TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"db1", "db2", "db3"} {
		if _, err := kv.Put(ctx, h, []byte("{}")); err != nil {
			t.Fatal(err)
		}
	}
	for range 25 {
		nc.Publish("lab.test", []byte("x"))
	}
	nc.Flush()

	rules, err := filepath.Abs("../../../docs/metrics-alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`global: {scrape_interval: 1s, evaluation_interval: 1s}
rule_files: [%q]
scrape_configs:
  - job_name: signet-broker
    static_configs: [{targets: [%q]}]
`, rules, maddr)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	promAddr := freeAddr(t)
	prom := exec.Command(promBin, "--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+promAddr)
	plog, err := os.Create(filepath.Join(dir, "prometheus.log"))
	if err != nil {
		t.Fatal(err)
	}
	prom.Stdout, prom.Stderr = plog, plog
	if err := prom.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { prom.Process.Kill(); prom.Wait() }()
	promLog := func() string { b, _ := os.ReadFile(plog.Name()); return string(b) }

	waitFor := func(what string, wait time.Duration, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(wait); !ok(); time.Sleep(250 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not after %s\n--- prometheus:\n%s\n--- broker:\n%s", what, wait, promLog(), brokerLog())
			}
		}
	}
	waitFor("Prometheus sees the 25 messages", 60*time.Second, func() bool {
		n, _ := strconv.ParseFloat(promQuery(promAddr, `signet_broker_in_messages_total{job="signet-broker"}`), 64)
		return n >= 25
	})
	waitFor("Prometheus sees three registry entries", 10*time.Second, func() bool {
		return promQuery(promAddr, `signet_broker_registry_entries{collective="lab"}`) == "3"
	})
	waitFor("the leafnode alert is pending (the hub is not there)", 20*time.Second, func() bool {
		return alertState(promAddr, "SignetBrokerLeafnodeDown") == "pending"
	})
	if s := alertState(promAddr, "SignetBrokerDown"); s != "" {
		t.Errorf("SignetBrokerDown is %s while the broker answers", s)
	}
	waitFor("every rule evaluates ok", 30*time.Second, func() bool {
		var r struct {
			Data struct {
				Groups []struct {
					Rules []struct {
						Name      string `json:"name"`
						Health    string `json:"health"`
						LastError string `json:"lastError"`
					} `json:"rules"`
				} `json:"groups"`
			} `json:"data"`
		}
		if err := promGet(promAddr, "/api/v1/rules", &r); err != nil {
			return false
		}
		n, ok := 0, 0
		for _, g := range r.Data.Groups {
			for _, rule := range g.Rules {
				n++
				switch rule.Health {
				case "ok":
					ok++
				case "err":
					t.Fatalf("rule %s fails on real series: %s", rule.Name, rule.LastError)
				}
			}
		}
		return n > 0 && ok == n
	})

	// The broker dies: Prometheus' own up series pages.
	broker.Process.Kill()
	broker.Wait()
	killed = true
	waitFor("SignetBrokerDown is pending after the broker was killed", 20*time.Second, func() bool {
		return alertState(promAddr, "SignetBrokerDown") == "pending"
	})
}

// TestAlertRulesFire runs promtool's rule unit tests
// (testdata/alerts_test.yml) over the broker rules of
// docs/metrics-alerts.yml: a route, a JetStream peer and a leafnode hub
// lost, a broker down, storage near its limit, slow consumers and a
// registry that shrank each fire the alert meant for them, on series
// shaped as this package writes them; half-full storage does not.
func TestAlertRulesFire(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not installed (Debian package prometheus; CI installs it)")
	}
	cmd := exec.Command(promtool, "test", "rules", "alerts_test.yml")
	cmd.Dir = "testdata"
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
}
