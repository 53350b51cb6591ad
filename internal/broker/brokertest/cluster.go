package brokertest

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/signetbus/signet/internal/broker"
)

// Cluster is a JetStream cluster of embedded brokers on loopback, as
// `signet broker --cluster ... --route ...` started on n machines would be.
type Cluster struct {
	tb    testing.TB
	dir   string
	Nodes []*server.Server
	cfgs  []broker.Config
}

// StartCluster starts n nodes (n1..nN) that route to each other, waits
// until JetStream has a meta leader and returns them; shut down at cleanup.
// topo adds to every node's topology (a leafnode listener, a domain); a
// LeafListen port 0 is replaced by a free one. node, when set, changes
// node i's (0-based) topology last.
func StartCluster(tb testing.TB, n int, topo broker.Topology, node func(i int, t *broker.Topology)) *Cluster {
	tb.Helper()
	c := &Cluster{tb: tb, dir: tb.TempDir()}
	var routes []string
	ports := make([]int, n)
	for i := range ports {
		ports[i] = FreePort(tb)
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", ports[i]))
	}
	for i := range n {
		t := topo
		t.ClusterListen = fmt.Sprintf("127.0.0.1:%d", ports[i])
		t.Routes = routes
		if strings.HasSuffix(t.LeafListen, ":0") {
			t.LeafListen = fmt.Sprintf("127.0.0.1:%d", FreePort(tb))
		}
		if node != nil {
			node(i, &t)
		}
		name := fmt.Sprintf("n%d", i+1)
		c.cfgs = append(c.cfgs, broker.Config{Port: FreePort(tb), StoreDir: filepath.Join(c.dir, name), Name: name, Topology: t})
	}
	c.Nodes = make([]*server.Server, n)
	errs := make(chan error, n)
	for i := range n {
		// Start them side by side: a node waits for its routes only as
		// long as JetStream needs a quorum, which the others provide.
		go func() { errs <- c.start(i) }()
	}
	for range n {
		if err := <-errs; err != nil {
			tb.Fatal(err)
		}
	}
	tb.Cleanup(func() {
		for _, s := range c.Nodes {
			if s != nil {
				s.Shutdown()
				s.WaitForShutdown()
			}
		}
	})
	c.WaitJetStream(30 * time.Second)
	return c
}

func (c *Cluster) start(i int) error {
	s, err := broker.Start(c.cfgs[i])
	if err != nil {
		return fmt.Errorf("node %s: %w", c.cfgs[i].Name, err)
	}
	c.Nodes[i] = s
	return nil
}

// URLs are the client URLs of every node, comma-separated as a client's
// nats.urls or SIGNET_NATS_URL take them.
func (c *Cluster) URLs() string {
	var out []string
	for _, cfg := range c.cfgs {
		out = append(out, fmt.Sprintf("nats://127.0.0.1:%d", cfg.Port))
	}
	return strings.Join(out, ",")
}

// URL is node i's client URL (0-based), stable across Kill and Restart.
func (c *Cluster) URL(i int) string { return fmt.Sprintf("nats://127.0.0.1:%d", c.cfgs[i].Port) }

// Kill shuts node i down abruptly for its clients: every connection drops.
func (c *Cluster) Kill(i int) {
	c.Nodes[i].Shutdown()
	c.Nodes[i].WaitForShutdown()
}

// Restart starts node i again with its store and ports.
func (c *Cluster) Restart(i int) {
	c.tb.Helper()
	var err error
	for range 50 { // the ports were just freed
		if err = c.start(i); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.tb.Fatal(err)
}

// WaitJetStream waits until the cluster answers JetStream requests through
// every running node: the meta leader is elected and known.
func (c *Cluster) WaitJetStream(wait time.Duration) {
	c.tb.Helper()
	deadline := time.Now().Add(wait)
	for i, s := range c.Nodes {
		if !s.Running() {
			continue
		}
		for {
			err := jsReady(c.URL(i))
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				c.tb.Fatalf("JetStream not ready through node n%d after %s: %v", i+1, wait, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

func jsReady(url string) error {
	nc, err := nats.Connect(url)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err = js.AccountInfo(ctx)
	return err
}

// FreePort returns a loopback port that was free a moment ago.
func FreePort(tb testing.TB) int {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
