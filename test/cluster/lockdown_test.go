package cluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/signetbus/signet/bus"
	"github.com/signetbus/signet/internal/broker"
	"github.com/signetbus/signet/internal/broker/brokertest"
	"github.com/signetbus/signet/internal/cli"
)

// TestLockedDownClusterRoutesAndLeafnodes runs a locked-down three-node
// cluster as documented: `signet broker init DIR`, then `signet broker
// --auth DIR` with --cluster, --route and --leafnode-listen on every node.
// The users' permissions guard the client port only; a route sees every
// message, so the route and leafnode ports must refuse a broker that
// does not hold DIR/cluster: one without TLS, and one with mutual TLS and
// a secret of another deployment. A locked-down DR broker (`signet broker
// --auth` of its own, the hub's cluster/ copied in) joins as a leafnode,
// and the cluster works: JetStream keeps three copies of the registry and
// a message crosses nodes.
func TestLockedDownClusterRoutesAndLeafnodes(t *testing.T) {
	dir := t.TempDir()
	auth := filepath.Join(dir, "auth")
	run := func(ctx context.Context, out *syncBuf, args ...string) int {
		return cli.Main(ctx, args, cli.IO{In: strings.NewReader(""), Out: out, Err: out,
			Getenv: func(k string) string { return map[string]string{"HOME": dir, "USER": "operator"}[k] }})
	}
	initOut := &syncBuf{}
	if code := run(context.Background(), initOut, "broker", "init", auth, "--collective", "prod", "--admin", "root", "--client", "alice", "--host", "web1"); code != 0 {
		t.Fatalf("signet broker init: exit %d\n%s", code, initOut)
	}
	n := 3
	ports := make([][3]int, n) // client, cluster, leafnode
	for i := range ports {
		ports[i] = [3]int{brokertest.FreePort(t), brokertest.FreePort(t), brokertest.FreePort(t)}
	}
	logs := make([]*syncBuf, n)
	for i := range n {
		args := []string{"broker", "--auth", auth, "--collective", "prod", "--name", fmt.Sprintf("n%d", i+1),
			"--port", fmt.Sprint(ports[i][0]), "--store", filepath.Join(dir, fmt.Sprintf("n%d", i+1)),
			"--cluster", fmt.Sprintf("127.0.0.1:%d", ports[i][1]), "--leafnode-listen", fmt.Sprintf("127.0.0.1:%d", ports[i][2])}
		for _, p := range ports {
			args = append(args, "--route", fmt.Sprintf("nats://127.0.0.1:%d", p[1]))
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		logs[i] = &syncBuf{}
		go func() { defer close(done); run(ctx, logs[i], args...) }()
		t.Cleanup(func() { cancel(); <-done })
	}
	// Each node starts; the one leading JetStream provisions the buckets
	// once the cluster has a majority.
	provisioned := func() bool {
		for _, l := range logs {
			if strings.Contains(l.String(), "provisioned on the cluster") {
				return true
			}
		}
		return false
	}
	for end := time.Now().Add(60 * time.Second); !provisioned(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("no node provisioned the buckets:\n%s\n%s\n%s", logs[0], logs[1], logs[2])
		}
	}

	// The cluster works for its own users: JetStream has three copies of
	// the provisioned registry, and a message published on n3 reaches a
	// subscriber on n2.
	ca := broker.LabTLS(auth).CA
	connect := func(i int) *nats.Conn {
		t.Helper()
		opt, err := nats.NkeyOptionFromSeed(broker.SeedPath(auth, "root"))
		if err != nil {
			t.Fatal(err)
		}
		nc, err := nats.Connect(fmt.Sprintf("tls://127.0.0.1:%d", ports[i][0]), opt, nats.RootCAs(ca))
		if err != nil {
			t.Fatalf("connect to n%d as root: %v", i+1, err)
		}
		t.Cleanup(nc.Close)
		return nc
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	js, err := jetstream.New(connect(0))
	if err != nil {
		t.Fatal(err)
	}
	if got := bucketReplicas(t, ctx, js, bus.RegistryBucket("prod")); got != 3 {
		t.Errorf("the registry has %d copies on the locked-down cluster, want 3", got)
	}
	subc := connect(1)
	sub, err := subc.SubscribeSync("prod.probe")
	if err != nil {
		t.Fatal(err)
	}
	subc.Flush()
	time.Sleep(200 * time.Millisecond) // the interest reaches the other nodes
	pub := connect(2)
	if err := pub.Publish("prod.probe", []byte("across")); err != nil {
		t.Fatal(err)
	}
	pub.Flush()
	if m, err := sub.NextMsg(10 * time.Second); err != nil || string(m.Data) != "across" {
		t.Fatalf("a message from n3 did not reach n2: %v", err)
	}

	// Brokers that do not hold DIR/cluster are refused on both ports.
	if _, err := broker.GenerateClusterAuth(filepath.Join(dir, "other"), time.Hour); err != nil {
		t.Fatal(err)
	}
	otherAuth, err := broker.LoadClusterAuth(filepath.Join(dir, "other"))
	if err != nil {
		t.Fatal(err)
	}
	route := fmt.Sprintf("nats://127.0.0.1:%d", ports[0][1])
	leaf := fmt.Sprintf("nats-leaf://127.0.0.1:%d", ports[0][2])
	start := func(name string, topo broker.Topology) *server.Server {
		t.Helper()
		s, err := broker.Start(broker.Config{Port: -1, StoreDir: filepath.Join(dir, name), Name: name, Topology: topo})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
		return s
	}
	var rogues []*server.Server
	for _, r := range []struct {
		name string
		auth *broker.ClusterAuth
	}{{"plain", nil}, {"otherca", otherAuth}} {
		rogues = append(rogues,
			start("route-"+r.name, broker.Topology{ClusterListen: fmt.Sprintf("127.0.0.1:%d", brokertest.FreePort(t)), Routes: []string{route}, Auth: r.auth}),
			start("leaf-"+r.name, broker.Topology{LeafRemotes: []string{leaf}, Domain: "x" + r.name, Auth: r.auth}))
	}
	// A locked-down DR broker run as documented: its own init (collective
	// dr), the hub's cluster/ copied over its own, --auth with
	// --leafnode-remote. A message its admin publishes reaches the hub's
	// admin through the leafnode.
	drAuth := filepath.Join(dir, "drauth")
	if code := run(context.Background(), &syncBuf{}, "broker", "init", drAuth, "--collective", "dr", "--admin", "root"); code != 0 {
		t.Fatalf("signet broker init (DR): exit %d", code)
	}
	if err := os.RemoveAll(filepath.Join(drAuth, "cluster")); err != nil {
		t.Fatal(err)
	}
	if err := os.CopyFS(filepath.Join(drAuth, "cluster"), os.DirFS(filepath.Join(auth, "cluster"))); err != nil {
		t.Fatal(err)
	}
	drPort := brokertest.FreePort(t)
	drLog := &syncBuf{}
	drCtx, drStop := context.WithCancel(context.Background())
	drDone := make(chan struct{})
	go func() {
		defer close(drDone)
		run(drCtx, drLog, "broker", "--auth", drAuth, "--collective", "dr", "--name", "dr1", "--port", fmt.Sprint(drPort),
			"--store", filepath.Join(dir, "dr1"), "--domain", "dr", "--leafnode-remote", leaf)
	}()
	t.Cleanup(func() { drStop(); <-drDone })
	for end := time.Now().Add(30 * time.Second); !strings.Contains(drLog.String(), "broker listening"); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("the DR broker did not start:\n%s", drLog)
		}
	}
	hubSub, err := connect(0).SubscribeSync("dr.probe")
	if err != nil {
		t.Fatal(err)
	}
	opt, err := nats.NkeyOptionFromSeed(broker.SeedPath(drAuth, "root"))
	if err != nil {
		t.Fatal(err)
	}
	drc, err := nats.Connect(fmt.Sprintf("tls://127.0.0.1:%d", drPort), opt, nats.RootCAs(broker.LabTLS(drAuth).CA))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(drc.Close)
	joined := false
	for end := time.Now().Add(20 * time.Second); !joined && time.Now().Before(end); {
		drc.Publish("dr.probe", []byte("over the leafnode"))
		drc.Flush()
		_, err := hubSub.NextMsg(200 * time.Millisecond)
		joined = err == nil
	}
	if !joined {
		t.Fatalf("the DR broker holding the hub's cluster/ did not join as a leafnode:\n%s", drLog)
	}
	// The DR broker joined: the refused ones had as long, and more.
	time.Sleep(2 * time.Second)
	for _, s := range rogues {
		if s.NumRoutes() > 0 || s.NumLeafNodes() > 0 {
			t.Errorf("%s joined the locked-down cluster: %d routes, %d leafnodes", s.Name(), s.NumRoutes(), s.NumLeafNodes())
		}
	}
}
