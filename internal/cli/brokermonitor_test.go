package cli

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/signetbus/signet/internal/testio"
)

func freeTCPPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// getJSON fetches http://addr/path into v.
func getJSON(t *testing.T, addr, path string, v any) {
	t.Helper()
	resp, err := http.Get("http://" + addr + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", path, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
}

// TestBrokerMonitorListen runs `signet broker --monitor-listen` and reads
// the real monitoring endpoints: /varz counts the client that connected
// and the messages it sent, /jsz reports JetStream usage, /healthz is ok.
func TestBrokerMonitorListen(t *testing.T) {
	maddr, nc, errb := runBrokerWith(t, "--monitor-listen")
	for range 5 {
		if err := nc.Publish("signet.test", []byte("hello")); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	var varz struct {
		Connections   int   `json:"connections"`
		InMsgs        int64 `json:"in_msgs"`
		InBytes       int64 `json:"in_bytes"`
		SlowConsumers int64 `json:"slow_consumers"`
	}
	getJSON(t, maddr, "/varz", &varz)
	if varz.Connections < 1 || varz.InMsgs < 5 || varz.InBytes < 25 {
		t.Errorf("/varz: %+v, want at least 1 connection, 5 messages, 25 bytes in", varz)
	}
	var jsz struct {
		Config struct {
			StoreDir string `json:"store_dir"`
		} `json:"config"`
		Memory  *uint64 `json:"memory"`
		Storage *uint64 `json:"storage"`
	}
	getJSON(t, maddr, "/jsz", &jsz)
	if jsz.Memory == nil || jsz.Storage == nil || jsz.Config.StoreDir == "" {
		t.Errorf("/jsz has no JetStream usage: %+v", jsz)
	}
	var health struct {
		Status string `json:"status"`
	}
	getJSON(t, maddr, "/healthz", &health)
	if health.Status != "ok" {
		t.Errorf("/healthz: %q", health.Status)
	}
	if !strings.Contains(errb.String(), "monitoring on http://"+maddr+"/varz") {
		t.Errorf("the status line does not name the monitoring address: %s", errb.String())
	}
}

// TestBrokerMonitorListenMustBeLoopback: the monitoring endpoints name
// every connection and account; they are not served beyond this machine
// unless allowed.
func TestBrokerMonitorListenMustBeLoopback(t *testing.T) {
	var out testio.Buffer
	code := Main(context.Background(), []string{"broker", "--store", t.TempDir(), "--monitor-listen", "0.0.0.0:8222"},
		IO{In: strings.NewReader(""), Out: &out, Err: &out, Getenv: func(string) string { return "" }})
	if code != 2 || !strings.Contains(out.String(), "--monitor-listen: metrics: listen address is not a loopback address") {
		t.Fatalf("exit %d: %s", code, out.String())
	}
}

// TestBrokerMetricsListen runs `signet broker --metrics-listen` and scrapes
// it: the Prometheus text format, parsed by Prometheus' own parser, counts
// the messages a real client sent.
func TestBrokerMetricsListen(t *testing.T) {
	maddr, nc, errb := runBrokerWith(t, "--metrics-listen")
	for range 5 {
		nc.Publish("signet.test", []byte("hello"))
	}
	nc.Flush()
	resp, err := http.Get("http://" + maddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/plain; version=0.0.4; charset=utf-8" {
		t.Errorf("Content-Type %q", ct)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	if f := fams["signet_broker_in_messages_total"]; f == nil || f.GetMetric()[0].GetCounter().GetValue() < 5 {
		t.Errorf("signet_broker_in_messages_total: %v", f)
	}
	if f := fams["signet_broker_connections"]; f == nil || f.GetMetric()[0].GetGauge().GetValue() < 1 {
		t.Errorf("signet_broker_connections: %v", f)
	}
	if !strings.Contains(errb.String(), "metrics on http://"+maddr+"/metrics") {
		t.Errorf("the status line does not name the metrics address: %s", errb.String())
	}
}

// TestBrokerMetricsListenMustBeLoopback: a metrics address beyond this
// machine is refused before the broker starts, unless allowed.
func TestBrokerMetricsListenMustBeLoopback(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:7777", ":7777", "10.1.2.3:7777"} {
		var out testio.Buffer
		code := Main(context.Background(), []string{"broker", "--store", t.TempDir(), "--metrics-listen", addr},
			IO{In: strings.NewReader(""), Out: &out, Err: &out, Getenv: func(string) string { return "" }})
		if code != 2 || !strings.Contains(out.String(), "--metrics-listen: metrics: listen address is not a loopback address") {
			t.Errorf("%s: exit %d: %s", addr, code, out.String())
		}
	}
}

// TestBrokerMetricsAllowRemote: with --metrics-allow-remote a wildcard
// address is served.
func TestBrokerMetricsAllowRemote(t *testing.T) {
	port, mport := freeTCPPort(t), freeTCPPort(t)
	ctx, cancel := context.WithCancel(context.Background())
	var errb testio.Buffer
	done := make(chan int)
	go func() {
		done <- Main(ctx, []string{"broker", "--port", strconv.Itoa(port), "--store", t.TempDir(),
			"--metrics-listen", "0.0.0.0:" + strconv.Itoa(mport), "--metrics-allow-remote"},
			IO{In: strings.NewReader(""), Out: &errb, Err: &errb, Getenv: func(string) string { return "" }})
	}()
	defer func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("signet broker exited %d: %s", code, errb.String())
		}
	}()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		resp, err := http.Get("http://127.0.0.1:" + strconv.Itoa(mport) + "/metrics")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("GET /metrics: %s", resp.Status)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics not served: %v\n%s", err, errb.String())
		}
	}
}

// TestBrokerMetricsPortInUse: a metrics port already taken stops the
// broker's start-up rather than leaving it unobserved.
func TestBrokerMetricsPortInUse(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var out testio.Buffer
	code := Main(context.Background(), []string{"broker", "--port", strconv.Itoa(freeTCPPort(t)), "--store", t.TempDir(), "--metrics-listen", l.Addr().String()},
		IO{In: strings.NewReader(""), Out: &out, Err: &out, Getenv: func(string) string { return "" }})
	if code == 0 || !strings.Contains(out.String(), "--metrics-listen: metrics: listen tcp "+l.Addr().String()) || !strings.Contains(out.String(), "address already in use") {
		t.Fatalf("exit %d: %s", code, out.String())
	}
}

// runBrokerWith runs `signet broker` with flag (--monitor-listen or
// --metrics-listen) on a free loopback port and returns that address and
// a client connected to the broker, and what the broker printed; the
// broker stops with the test, and must exit 0.
func runBrokerWith(t *testing.T, flag string) (string, *nats.Conn, *testio.Buffer) {
	t.Helper()
	port, mport := freeTCPPort(t), freeTCPPort(t)
	maddr := "127.0.0.1:" + strconv.Itoa(mport)
	ctx, cancel := context.WithCancel(context.Background())
	errb := &testio.Buffer{}
	done := make(chan int)
	go func() {
		done <- Main(ctx, []string{"broker", "--port", strconv.Itoa(port), "--store", t.TempDir(), flag, maddr},
			IO{In: strings.NewReader(""), Out: errb, Err: errb, Getenv: func(string) string { return "" }})
	}()
	t.Cleanup(func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("signet broker exited %d: %s", code, errb.String())
		}
	})
	var nc *nats.Conn
	var err error
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if nc, err = nats.Connect("nats://127.0.0.1:" + strconv.Itoa(port)); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("broker did not come up: %v\n%s", err, errb.String())
	}
	t.Cleanup(nc.Close)
	return maddr, nc, errb
}
