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
	"syscall"
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

// TestPrometheusScrapesBroker runs a real Prometheus server against a
// cluster of three real `signet broker --metrics-listen` processes (the
// signet binary built from this tree), set up as a DR site whose leafnode
// hub is not there. Prometheus' queries see a real client's messages and
// the registry's entries on every node, every rule of
// docs/metrics-alerts.yml evaluates without error and the leafnode alert
// goes pending. Then n3 is killed (the broker-down and route-down alerts go
// pending) and n2 stopped cleanly (the JetStream-peer-offline alert for n2,
// and the no-meta-leader alert of n1, left without a quorum).
func TestPrometheusScrapesBroker(t *testing.T) {
	if testing.Short() {
		t.Skip("builds signet, starts three brokers and a Prometheus server")
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
	hub := freeAddr(t)
	const n = 3
	var natsAddr, maddr, routes [n]string
	for i := range n {
		natsAddr[i], maddr[i], routes[i] = freeAddr(t), freeAddr(t), freeAddr(t)
	}
	var procs [n]*exec.Cmd
	var logs [n]string
	for i := range n {
		_, port, _ := net.SplitHostPort(natsAddr[i])
		name := fmt.Sprintf("n%d", i+1)
		args := []string{"broker", "--name", name, "--port", port, "--store", filepath.Join(dir, name),
			"--cluster", routes[i], "--metrics-listen", maddr[i], "--domain", "dr", "--leafnode-remote", "nats-leaf://" + hub}
		for _, r := range routes {
			args = append(args, "--route", "nats://"+r)
		}
		cmd := exec.Command(signet, args...)
		logs[i] = filepath.Join(dir, name+".log")
		f, err := os.Create(logs[i])
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stdout, cmd.Stderr = f, f
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		procs[i] = cmd
		defer func() {
			if cmd.ProcessState == nil {
				cmd.Process.Kill()
				cmd.Wait()
			}
		}()
	}
	brokerLogs := func() string {
		var all string
		for _, l := range logs {
			b, _ := os.ReadFile(l)
			all += string(b)
		}
		return all
	}

	var nc *nats.Conn
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if nc, err = nats.Connect("nats://" + natsAddr[0]); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("signet broker did not come up: %v\n%s", err, brokerLogs())
		}
	}
	defer nc.Close()
	js, err := jetstream.NewWithDomain(nc, "dr")
	if err != nil {
		t.Fatal(err)
	}
	var kv jetstream.KeyValue
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(250 * time.Millisecond) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "signet_registry_lab", TTL: time.Hour, Replicas: 3})
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no JetStream on the cluster: %v\n%s", err, brokerLogs())
		}
	}
	for _, h := range []string{"db1", "db2", "db3"} {
		if _, err := kv.Put(context.Background(), h, []byte("{}")); err != nil {
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
    static_configs: [{targets: [%q, %q, %q]}]
`, rules, maddr[0], maddr[1], maddr[2])
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
				t.Fatalf("%s: not after %s\n--- prometheus:\n%s\n--- brokers:\n%s", what, wait, promLog(), brokerLogs())
			}
		}
	}
	waitFor("Prometheus sees the 25 messages on n1", 60*time.Second, func() bool {
		v, _ := strconv.ParseFloat(promQuery(promAddr, fmt.Sprintf(`signet_broker_in_messages_total{instance=%q}`, maddr[0])), 64)
		return v >= 25
	})
	waitFor("Prometheus sees three registry entries on each node", 20*time.Second, func() bool {
		return promQuery(promAddr, `count(signet_broker_registry_entries{collective="lab"} == 3)`) == "3"
	})
	waitFor("Prometheus sees one meta leader", 20*time.Second, func() bool {
		return promQuery(promAddr, `sum(signet_broker_jetstream_meta_leader)`) == "1"
	})
	waitFor("the leafnode alert is pending (the hub is not there)", 20*time.Second, func() bool {
		return alertState(promAddr, "SignetBrokerLeafnodeDown") == "pending"
	})
	for _, a := range []string{"SignetBrokerDown", "SignetBrokerRouteDown", "SignetBrokerJetStreamPeerOffline", "SignetBrokerNoMetaLeader"} {
		if s := alertState(promAddr, a); s != "" {
			t.Errorf("%s is %s while the cluster is whole", a, s)
		}
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
		total, ok := 0, 0
		for _, g := range r.Data.Groups {
			for _, rule := range g.Rules {
				total++
				switch rule.Health {
				case "ok":
					ok++
				case "err":
					t.Fatalf("rule %s fails on real series: %s", rule.Name, rule.LastError)
				}
			}
		}
		return total > 0 && ok == total
	})

	// n3 crashes (SIGKILL): it stops answering scrapes, and the others page
	// on the lost route at once. nats-server marks a crashed peer offline
	// only after it missed its heartbeats for 150 s, so the peer alert is
	// not waited for here.
	procs[2].Process.Kill()
	procs[2].Wait()
	for _, a := range []string{"SignetBrokerDown", "SignetBrokerRouteDown"} {
		waitFor(a+" is pending after n3 was killed", 30*time.Second, func() bool {
			return alertState(promAddr, a) == "pending"
		})
	}
	// n2 is stopped cleanly (SIGTERM): it tells its peers, which mark it
	// offline at once; n1, left alone, has no JetStream quorum.
	procs[1].Process.Signal(syscall.SIGTERM)
	procs[1].Wait()
	waitFor("SignetBrokerJetStreamPeerOffline is pending for n2", 30*time.Second, func() bool {
		return promQuery(promAddr, `ALERTS{alertname="SignetBrokerJetStreamPeerOffline",peer="n2",alertstate="pending"}`) == "1"
	})
	waitFor("SignetBrokerNoMetaLeader is pending on n1", 60*time.Second, func() bool {
		return alertState(promAddr, "SignetBrokerNoMetaLeader") == "pending"
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
