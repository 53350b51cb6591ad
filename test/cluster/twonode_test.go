package cluster

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/signetbus/signet/bus"
	"github.com/signetbus/signet/internal/broker/brokertest"
	"github.com/signetbus/signet/internal/cli"
	"github.com/signetbus/signet/internal/keys"
)

// syncBuf is an io.Writer safe for the broker's and the test's goroutines.
type syncBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// TestTwoNodeCluster runs `signet broker` on two cluster nodes, as an
// operator who has two machines would. Each node warns at start that
// JetStream does not survive the loss of either (a majority of two is
// two); the hosts' buckets get one copy. When a node dies, signed
// requests keep flowing through the other, and a command that needs
// JetStream (a deploy plan) fails within seconds, saying that the
// registry is unavailable and why, instead of blaming a registry lost
// with the broker's state.
func TestTwoNodeCluster(t *testing.T) {
	dir := t.TempDir()
	clusterPorts := []int{brokertest.FreePort(t), brokertest.FreePort(t)}
	clientPorts := []int{brokertest.FreePort(t), brokertest.FreePort(t)}
	var urls []string
	for _, p := range clientPorts {
		urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", p))
	}
	env := func(cfg string) func(string) string {
		m := map[string]string{"SIGNET_CONFIG": cfg, "USER": "operator", "HOME": dir}
		return func(k string) string { return m[k] }
	}
	stops := make([]context.CancelFunc, 2)
	ended := make([]chan struct{}, 2)
	logs := make([]*syncBuf, 2)
	for i := range 2 {
		ctx, cancel := context.WithCancel(context.Background())
		stops[i], ended[i], logs[i] = cancel, make(chan struct{}), &syncBuf{}
		args := []string{"broker", "--name", fmt.Sprintf("n%d", i+1), "--port", fmt.Sprint(clientPorts[i]),
			"--store", filepath.Join(dir, fmt.Sprintf("n%d", i+1)), "--cluster", fmt.Sprintf("127.0.0.1:%d", clusterPorts[i])}
		for _, p := range clusterPorts {
			args = append(args, "--route", fmt.Sprintf("nats://127.0.0.1:%d", p))
		}
		go func() {
			defer close(ended[i])
			cli.Main(ctx, args, cli.IO{In: strings.NewReader(""), Out: logs[i], Err: logs[i], Getenv: env("")})
		}()
		t.Cleanup(func() { cancel(); <-ended[i] })
	}
	for i := range 2 {
		for end := time.Now().Add(30 * time.Second); !strings.Contains(logs[i].String(), "broker listening"); time.Sleep(50 * time.Millisecond) {
			if time.Now().After(end) {
				t.Fatalf("n%d did not start:\n%s", i+1, logs[i])
			}
		}
		if out := logs[i].String(); !strings.Contains(out, "two-node cluster") || !strings.Contains(out, "Run three nodes") {
			t.Errorf("n%d does not warn about two nodes:\n%s", i+1, out)
		}
	}

	opKey := filepath.Join(dir, "operator_key")
	if _, err := keys.Generate(opKey, "operator@bastion", nil); err != nil {
		t.Fatal(err)
	}
	op, err := keys.LoadSigner(opKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	ids := hostIDs("web", 6)
	f := newFleet(t, "prod", ids, op)
	f.start(strings.Join(urls, ","), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	nc := operatorConn(t, strings.Join(urls, ","))
	waitRegistry(t, ctx, nc, "prod", len(ids)+1)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if n := bucketReplicas(t, ctx, js, bus.RegistryBucket("prod")); n != 1 {
		t.Errorf("the registry has %d copies on two nodes, want 1", n)
	}
	write(t, filepath.Join(dir, "known_hosts"), f.knownHosts())
	write(t, filepath.Join(dir, "app.yaml"), app)
	cfg := filepath.Join(dir, "client.yaml")
	write(t, cfg, "user: operator\nkey: operator_key\nknown_hosts: known_hosts\ncollective: prod\nnats:\n  urls: ["+
		strings.Join(urls, ",")+"]\nruns: runs\ntimeout: 5s\ndiscovery_timeout: 1s\n")
	signet := func(args ...string) (int, string) {
		t.Helper()
		out := &syncBuf{}
		code := cli.Main(ctx, args, cli.IO{In: strings.NewReader(""), Out: out, Err: out, Getenv: env(cfg)})
		return code, out.String()
	}
	named := []string{"ping"}
	for _, id := range ids {
		named = append(named, "-I", id)
	}
	if code, out := signet(named...); code != 0 {
		t.Fatalf("signet ping with both nodes: exit %d\n%s", code, out)
	}

	// n2 dies: its hosts fail over to n1, which answers requests but has
	// no JetStream.
	stops[1]()
	<-ended[1]
	for end := time.Now().Add(30 * time.Second); f.connected() < len(ids)+1; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("%d of %d hosts connected after n2 died", f.connected(), len(ids)+1)
		}
	}
	if code, out := signet(named...); code != 0 {
		t.Fatalf("signet ping with n2 down: exit %d\n%s", code, out)
	}
	t0 := time.Now()
	code, out := signet("deploy", filepath.Join(dir, "app.yaml"), "1.4.2", "--env", "prod", "--plan")
	took := time.Since(t0)
	t.Logf("signet deploy --plan with n2 down (exit %d after %s):\n%s", code, took.Round(time.Millisecond), out)
	if code == 0 || !strings.Contains(out, "unavailable") || !strings.Contains(out, "one node of two") || strings.Contains(out, "state was probably lost") {
		t.Fatalf("signet deploy --plan with n2 down: exit %d, want a failure that says the registry is unavailable and why", code)
	}
	if took > 30*time.Second {
		t.Errorf("signet deploy --plan took %s to fail", took)
	}
}
