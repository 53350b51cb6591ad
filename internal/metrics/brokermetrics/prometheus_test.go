package brokermetrics

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/signetbus/signet/internal/metrics/promtest"
)

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
	hub := promtest.FreeAddr(t)
	const n = 3
	var natsAddr, maddr, routes [n]string
	for i := range n {
		natsAddr[i], maddr[i], routes[i] = promtest.FreeAddr(t), promtest.FreeAddr(t), promtest.FreeAddr(t)
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
	promAddr, promLog := promtest.Start(t, promBin, dir, cfg)

	waitFor := func(what string, wait time.Duration, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(wait); !ok(); time.Sleep(250 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not after %s\n--- prometheus:\n%s\n--- brokers:\n%s", what, wait, promLog(), brokerLogs())
			}
		}
	}
	waitFor("Prometheus sees the 25 messages on n1", 60*time.Second, func() bool {
		v, _ := strconv.ParseFloat(promtest.Query(promAddr, fmt.Sprintf(`signet_broker_in_messages_total{instance=%q}`, maddr[0])), 64)
		return v >= 25
	})
	waitFor("Prometheus sees three registry entries on each node", 20*time.Second, func() bool {
		return promtest.Query(promAddr, `count(signet_broker_registry_entries{collective="lab"} == 3)`) == "3"
	})
	waitFor("Prometheus sees one meta leader", 20*time.Second, func() bool {
		return promtest.Query(promAddr, `sum(signet_broker_jetstream_meta_leader)`) == "1"
	})
	waitFor("the leafnode alert is pending (the hub is not there)", 20*time.Second, func() bool {
		return promtest.AlertState(promAddr, "SignetBrokerLeafnodeDown") == "pending"
	})
	for _, a := range []string{"SignetBrokerDown", "SignetBrokerRouteDown", "SignetBrokerJetStreamPeerOffline", "SignetBrokerNoMetaLeader"} {
		if s := promtest.AlertState(promAddr, a); s != "" {
			t.Errorf("%s is %s while the cluster is whole", a, s)
		}
	}
	waitFor("every rule evaluates ok", 30*time.Second, func() bool {
		total, ok, bad, err := promtest.Rules(promAddr)
		if len(bad) > 0 {
			t.Fatalf("rules fail on real series: %v", bad)
		}
		return err == nil && total > 0 && ok == total
	})

	// n3 crashes (SIGKILL): it stops answering scrapes, and the others page
	// on the lost route at once. nats-server marks a crashed peer offline
	// only after it missed its heartbeats for 150 s, so the peer alert is
	// not waited for here.
	procs[2].Process.Kill()
	procs[2].Wait()
	for _, a := range []string{"SignetBrokerDown", "SignetBrokerRouteDown"} {
		waitFor(a+" is pending after n3 was killed", 30*time.Second, func() bool {
			return promtest.AlertState(promAddr, a) == "pending"
		})
	}
	// n2 is stopped cleanly (SIGTERM): it tells its peers, which mark it
	// offline at once; n1, left alone, has no JetStream quorum.
	procs[1].Process.Signal(syscall.SIGTERM)
	procs[1].Wait()
	waitFor("SignetBrokerJetStreamPeerOffline is pending for n2", 30*time.Second, func() bool {
		return promtest.Query(promAddr, `ALERTS{alertname="SignetBrokerJetStreamPeerOffline",peer="n2",alertstate="pending"}`) == "1"
	})
	waitFor("SignetBrokerNoMetaLeader is pending on n1", 60*time.Second, func() bool {
		return promtest.AlertState(promAddr, "SignetBrokerNoMetaLeader") == "pending"
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
