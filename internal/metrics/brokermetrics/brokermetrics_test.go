package brokermetrics

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/signetbus/signet/internal/broker"
	"github.com/signetbus/signet/internal/broker/brokertest"
	"github.com/signetbus/signet/internal/metrics/promtext"
)

// scrape writes s's metrics and parses them with Prometheus' own parser.
func scrape(t *testing.T, s *server.Server) (map[string]*dto.MetricFamily, []byte) {
	t.Helper()
	var b bytes.Buffer
	if err := promtext.Write(&b, Collect(s)); err != nil {
		t.Fatal(err)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(b.Bytes()))
	if err != nil {
		t.Fatalf("Prometheus' parser refuses the broker's metrics: %v\n%s", err, b.String())
	}
	return fams, b.Bytes()
}

// value is the value of fams[name]'s series whose labels include want
// ("k=v"); -1 when there is none.
func value(fams map[string]*dto.MetricFamily, name string, want ...string) float64 {
	f, ok := fams[name]
	if !ok {
		return -1
	}
next:
	for _, m := range f.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		for _, w := range want {
			k, v, _ := strings.Cut(w, "=")
			if labels[k] != v {
				continue next
			}
		}
		if m.Counter != nil {
			return m.GetCounter().GetValue()
		}
		return m.GetGauge().GetValue()
	}
	return -1
}

// TestCollectSingleServer reads a real embedded broker after real traffic:
// a client's messages, a registry bucket with two hosts; the counters and
// gauges say so, and promtool's linter accepts the whole exposition.
func TestCollectSingleServer(t *testing.T) {
	s := brokertest.Start(t)
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ctx := context.Background()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "signet_registry_prod", TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"web1", "web2"} {
		if _, err := kv.Put(ctx, h, []byte("{}")); err != nil {
			t.Fatal(err)
		}
	}
	before, _ := scrape(t, s)
	for range 10 {
		nc.Publish("signet.test", []byte("0123456789"))
	}
	nc.Flush()
	after, text := scrape(t, s)

	if d := value(after, "signet_broker_in_messages_total") - value(before, "signet_broker_in_messages_total"); d < 10 {
		t.Errorf("in_messages_total moved by %v, want at least 10", d)
	}
	if d := value(after, "signet_broker_in_bytes_total") - value(before, "signet_broker_in_bytes_total"); d < 100 {
		t.Errorf("in_bytes_total moved by %v, want at least 100", d)
	}
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"signet_broker_info", []string{"server_name=" + s.Name()}, 1},
		{"signet_broker_connections", nil, 1},
		{"signet_broker_jetstream_enabled", nil, 1},
		{"signet_broker_jetstream_streams", nil, 1},
		{"signet_broker_registry_entries", []string{"collective=prod"}, 2},
		{"signet_broker_slow_consumers_total", []string{"kind=client"}, 0},
		{"signet_broker_routes", nil, 0},
		{"signet_broker_leafnodes", nil, 0},
	} {
		if got := value(after, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if v := value(after, "signet_broker_jetstream_storage_used_bytes"); v <= 0 {
		t.Errorf("storage used = %v, want > 0 after two registry writes", v)
	}
	if v := value(after, "signet_broker_jetstream_storage_limit_bytes"); v <= 0 {
		t.Errorf("storage limit = %v", v)
	}
	if api := value(after, "signet_broker_jetstream_api_requests_total"); api < 1 {
		t.Errorf("api_requests_total = %v, want >= 1 (the bucket was created)", api)
	}
	if f := after["signet_broker_connections_total"]; f.GetType() != dto.MetricType_COUNTER {
		t.Errorf("connections_total has type %v", f.GetType())
	}
	if f := after["signet_broker_connections"]; f.GetType() != dto.MetricType_GAUGE {
		t.Errorf("connections has type %v", f.GetType())
	}
	promtoolCheck(t, text)
}

func promtoolCheck(t *testing.T, text []byte) {
	t.Helper()
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not installed (Debian package prometheus; CI installs it)")
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(text)
	if out, err := cmd.CombinedOutput(); err != nil || len(out) > 0 {
		t.Fatalf("promtool check metrics: %v\n%s\n--- exposition:\n%s", err, out, text)
	}
}

// TestCollectCluster: three real nodes; each sees two route peers and a
// meta group of three with one leader. A node killed drops out of the
// others' routes and shows as a JetStream peer down: what the alert rules
// page on.
func TestCollectCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node cluster")
	}
	c := brokertest.StartCluster(t, 3, broker.Topology{ClusterName: "metrics"}, nil)
	c.WaitJetStream(30 * time.Second)
	leaders := 0
	for i, s := range c.Nodes {
		m, text := scrape(t, s)
		if v := value(m, "signet_broker_route_peers"); v != 2 {
			t.Errorf("n%d: route_peers = %v, want 2", i+1, v)
		}
		if v := value(m, "signet_broker_jetstream_cluster_size"); v != 3 {
			t.Errorf("n%d: cluster_size = %v, want 3", i+1, v)
		}
		if v := value(m, "signet_broker_jetstream_meta_has_leader"); v != 1 {
			t.Errorf("n%d: meta_has_leader = %v", i+1, v)
		}
		leaders += int(value(m, "signet_broker_jetstream_meta_leader"))
		if i == 0 {
			promtoolCheck(t, text)
		}
	}
	if leaders != 1 {
		t.Errorf("%d nodes say they lead the meta group, want 1", leaders)
	}
	c.Kill(2)
	deadline := time.Now().Add(20 * time.Second)
	for {
		m, _ := scrape(t, c.Nodes[0])
		peers, up := value(m, "signet_broker_route_peers"), value(m, "signet_broker_jetstream_peer_up", "peer=n3")
		connected := value(m, "signet_broker_route_connected", "remote=n3")
		if peers == 1 && up == 0 && connected == -1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("n1 after n3 died: route_peers %v, peer_up{n3} %v, route_connected{n3} %v; want 1, 0, absent", peers, up, connected)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestCollectLeafnode: a real DR broker dials a real hub as a leafnode. The
// DR side counts its remote connected and the hub the connection accepted;
// once the hub is gone the DR side says its remote is not connected, which
// SignetBrokerLeafnodeDown pages on.
func TestCollectLeafnode(t *testing.T) {
	leafPort := brokertest.FreePort(t)
	hub, err := broker.Start(broker.Config{Port: -1, StoreDir: t.TempDir(), Name: "hub1",
		Topology: broker.Topology{LeafListen: fmt.Sprintf("127.0.0.1:%d", leafPort)}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { hub.Shutdown(); hub.WaitForShutdown() }()
	dr, err := broker.Start(broker.Config{Port: -1, StoreDir: t.TempDir(), Name: "dr1",
		Topology: broker.Topology{Domain: "dr", LeafRemotes: []string{fmt.Sprintf("nats-leaf://127.0.0.1:%d", leafPort)}}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { dr.Shutdown(); dr.WaitForShutdown() }()
	waitMetric := func(s *server.Server, what string, ok func(m map[string]*dto.MetricFamily) bool) {
		t.Helper()
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			m, text := scrape(t, s)
			if ok(m) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not after 20s:\n%s", what, text)
			}
		}
	}
	waitMetric(dr, "the DR broker's remote connected", func(m map[string]*dto.MetricFamily) bool {
		return value(m, "signet_broker_leafnode_remotes_configured") == 1 && value(m, "signet_broker_leafnode_remotes_connected") == 1 &&
			value(m, "signet_broker_leafnode_connected", "remote=hub1", "direction=dialled") == 1 &&
			value(m, "signet_broker_info", "domain=dr") == 1
	})
	waitMetric(hub, "the hub's leafnode accepted", func(m map[string]*dto.MetricFamily) bool {
		return value(m, "signet_broker_leafnodes") == 1 && value(m, "signet_broker_leafnode_remotes_configured") == 0 &&
			value(m, "signet_broker_leafnode_connected", "remote=dr1", "direction=accepted") == 1
	})
	_, text := scrape(t, dr)
	promtoolCheck(t, text)
	hub.Shutdown()
	hub.WaitForShutdown()
	waitMetric(dr, "the DR broker's remote down", func(m map[string]*dto.MetricFamily) bool {
		return value(m, "signet_broker_leafnode_remotes_configured") == 1 && value(m, "signet_broker_leafnode_remotes_connected") == 0 &&
			value(m, "signet_broker_leafnode_connected") == -1
	})
}

// BenchmarkScrape measures one scrape of a real broker holding a registry
// bucket of 1000 hosts: Collect and Write, as the handler does.
func BenchmarkScrape(b *testing.B) {
	s := brokertest.Start(b)
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx := context.Background()
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "signet_registry_bench", TTL: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	for i := range 1000 {
		if _, err := kv.Put(ctx, fmt.Sprintf("web%d", i), []byte("{}")); err != nil {
			b.Fatal(err)
		}
	}
	var buf bytes.Buffer
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		buf.Reset()
		if err := promtext.Write(&buf, Collect(s)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(buf.Len()), "bytes/scrape")
}

// TestHandlerBoundsScrapesInFlight: with maxScrapesInFlight scrapes being
// served, one more is refused with 503; once one ends, it is served.
func TestHandlerBoundsScrapesInFlight(t *testing.T) {
	s := brokertest.Start(t)
	h := Handler(s, slog.New(slog.DiscardHandler)).(*handler)
	for range maxScrapesInFlight {
		h.sem <- struct{}{}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("scrape beyond the bound: %d, want 503", rec.Code)
	}
	<-h.sem
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != promtext.ContentType || !strings.Contains(rec.Body.String(), "signet_broker_connections ") {
		t.Fatalf("scrape within the bound: %d %q\n%s", rec.Code, rec.Header().Get("Content-Type"), rec.Body.String())
	}
}
