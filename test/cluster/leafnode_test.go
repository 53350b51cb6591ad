package cluster

import (
	"context"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/signetbus/signet/internal/broker"
	"github.com/signetbus/signet/internal/broker/brokertest"
	"github.com/signetbus/signet/internal/cli"
	"github.com/signetbus/signet/internal/keys"
)

// link is a TCP proxy standing for the WAN link between the DR site and
// the hub: Cut drops every connection and refuses new ones, as a network
// partition would.
type link struct {
	l      net.Listener
	target string
	mu     sync.Mutex
	conns  []net.Conn
	cut    bool
}

func newLink(t *testing.T, target string) *link {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	k := &link{l: l, target: target}
	t.Cleanup(func() { l.Close(); k.Cut() })
	go k.serve()
	return k
}

func (k *link) addr() string { return k.l.Addr().String() }

func (k *link) serve() {
	for {
		c, err := k.l.Accept()
		if err != nil {
			return
		}
		k.mu.Lock()
		if k.cut {
			k.mu.Unlock()
			c.Close()
			continue
		}
		up, err := net.Dial("tcp", k.target)
		if err != nil {
			k.mu.Unlock()
			c.Close()
			continue
		}
		k.conns = append(k.conns, c, up)
		k.mu.Unlock()
		go func() { io.Copy(up, c); up.Close() }()
		go func() { io.Copy(c, up); c.Close() }()
	}
}

// Cut drops the link until the test ends.
func (k *link) Cut() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.cut = true
	for _, c := range k.conns {
		c.Close()
	}
	k.conns = nil
}

// TestDRSiteOverLeafnode runs production on a three-node hub cluster and a
// DR site whose broker joins it as a leafnode (its own JetStream domain),
// each site with its own collective. One bastion, connected to the hub
// only, reaches both with `signet ping --env prod` and `--env dr`. When
// the leafnode is cut, the DR hosts are reported by name as not
// responding, and production answers as before.
func TestDRSiteOverLeafnode(t *testing.T) {
	// Every hub node's leafnode listener is reached over the WAN link, and
	// advertised as such: the DR broker fails over from node to node, but
	// only through the link.
	var wan []*link
	var remotes []string
	hub := brokertest.StartCluster(t, 3, broker.Topology{}, func(i int, topo *broker.Topology) {
		topo.LeafListen = fmt.Sprintf("127.0.0.1:%d", brokertest.FreePort(t))
		k := newLink(t, topo.LeafListen)
		topo.LeafAdvertise = k.addr()
		wan = append(wan, k)
		remotes = append(remotes, "nats-leaf://"+k.addr())
	})
	dr, err := broker.Start(broker.Config{Port: -1, StoreDir: t.TempDir(), Name: "dr1",
		Topology: broker.Topology{LeafRemotes: remotes, Domain: "dr"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dr.Shutdown(); dr.WaitForShutdown() })
	deadline := time.Now().Add(20 * time.Second)
	for dr.NumLeafNodes() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the DR broker did not connect to the hub as a leafnode")
		}
		time.Sleep(50 * time.Millisecond)
	}

	dir := t.TempDir()
	opKey := filepath.Join(dir, "operator_key")
	if _, err := keys.Generate(opKey, "operator@bastion", nil); err != nil {
		t.Fatal(err)
	}
	op, err := keys.LoadSigner(opKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	prodIDs, drIDs := hostIDs("web", 20), hostIDs("dr", 10)
	prod := newFleet(t, "prod", prodIDs, op)
	prod.start(hub.URLs(), nil)
	drf := newFleet(t, "dr", drIDs, op)
	delete(drf.sim.Nodes, "lb1") // the hub's load balancer
	drf.start(dr.ClientURL(), map[string]string{"env": "dr"})
	// Every host is in its site's registry before the plans below list them.
	rctx, rcancel := context.WithTimeout(context.Background(), time.Minute)
	defer rcancel()
	waitRegistry(t, rctx, operatorConn(t, hub.URLs()), "prod", len(prodIDs)+1)
	waitRegistry(t, rctx, operatorConn(t, dr.ClientURL()), "dr", len(drIDs))
	write(t, filepath.Join(dir, "known_hosts"), prod.knownHosts()+drf.knownHosts())
	cfg := filepath.Join(dir, "client.yaml")
	write(t, cfg, `user: operator
key: operator_key
known_hosts: known_hosts
nats:
  urls: [`+hub.URLs()+`]
timeout: 5s
discovery_timeout: 1s
environments:
  prod:
    collective: prod
  dr:
    collective: dr
    nats:
      urls: [`+hub.URLs()+`]
      jetstream_domain: dr
`)
	write(t, filepath.Join(dir, "app.yaml"), app)
	signet := func(args ...string) (int, string) {
		t.Helper()
		var out, errb strings.Builder
		env := map[string]string{"SIGNET_CONFIG": cfg, "USER": "operator", "HOME": dir}
		code := cli.Main(context.Background(), args, cli.IO{In: strings.NewReader(""), Out: &out, Err: &errb, Getenv: func(k string) string { return env[k] }})
		return code, out.String() + errb.String()
	}
	named := func(ids []string) []string {
		var out []string
		for _, id := range ids {
			out = append(out, "-I", id)
		}
		return out
	}
	pingEnv := func(env string, ids []string) (int, string) {
		return signet(append([]string{"ping", "--env", env}, named(ids)...)...)
	}
	// untilAll pings until every host's line says want (hosts apply a
	// control document moments after it is published).
	untilAll := func(env string, ids []string, want string) {
		t.Helper()
		var out string
		for end := time.Now().Add(30 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
			_, out = pingEnv(env, ids)
			all := true
			for _, id := range ids {
				all = all && strings.Contains(lineOf(out, id), want)
			}
			if all {
				return
			}
		}
		t.Fatalf("signet ping --env %s: not every host says %q within 30s:\n%s", env, want, out)
	}
	// The DR registry lives in the DR domain; wait until every DR host
	// answers through the leafnode before cutting it.
	for {
		code, out := pingEnv("dr", drIDs)
		if code == 0 {
			break
		}
		if time.Now().After(deadline.Add(20 * time.Second)) {
			t.Fatalf("signet ping --env dr through the hub: exit %d\n%s", code, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if code, out := pingEnv("prod", prodIDs); code != 0 {
		t.Fatalf("signet ping --env prod: exit %d\n%s", code, out)
	}
	// A deploy plan needs the environment's registry: the DR one is read
	// in the DR domain, through the leafnode.
	for env, want := range map[string][2]string{"prod": {"web001", "dr001"}, "dr": {"dr001", "web001"}} {
		code, out := signet("deploy", filepath.Join(dir, "app.yaml"), "1.4.2", "--env", env, "--plan")
		// Under load a host may register more than a few seconds after it
		// started, which a young registry takes for one refilled after the
		// broker lost its state: the plan waits, as its hint says, until
		// the registry is one refresh old.
		for end := time.Now().Add(30 * time.Second); code != 0 && strings.Contains(out, "created again") && time.Now().Before(end); {
			time.Sleep(time.Second)
			code, out = signet("deploy", filepath.Join(dir, "app.yaml"), "1.4.2", "--env", env, "--plan")
		}
		if code != 0 || lineOf(out, want[0]) == "" || lineOf(out, want[1]) != "" {
			t.Fatalf("signet deploy --env %s --plan: exit %d, want %s and not %s in the plan\n%s", env, code, want[0], want[1], out)
		}
	}
	// An emergency lock with --env dr is written in the DR domain, where
	// the DR hosts watch it, and locks them only.
	if code, out := signet("lock", "--all", "--reason", "dr drill", "--env", "dr"); code != 0 {
		t.Fatalf("signet lock --env dr: exit %d\n%s", code, out)
	}
	untilAll("dr", drIDs, "refused")
	if code, out := pingEnv("prod", prodIDs); code != 0 {
		t.Fatalf("signet ping --env prod with DR locked: exit %d\n%s", code, out)
	}
	if code, out := signet("unlock", "L1", "--env", "dr"); code != 0 {
		t.Fatalf("signet unlock --env dr: exit %d\n%s", code, out)
	}
	untilAll("dr", drIDs, "\tok\t")
	// --env prod names only its own collective: a DR host is not in it.
	if code, out := pingEnv("prod", drIDs[:1]); code == 0 {
		t.Fatalf("signet ping --env prod -I %s answered: the environments are not apart\n%s", drIDs[0], out)
	}

	for _, k := range wan {
		k.Cut()
	}
	for dr.NumLeafNodes() > 0 {
		time.Sleep(20 * time.Millisecond)
	}
	code, out := pingEnv("dr", drIDs)
	if code == 0 {
		t.Fatalf("signet ping --env dr with the leafnode cut: exit 0\n%s", out)
	}
	for _, id := range drIDs {
		line := lineOf(out, id)
		if !strings.Contains(line, "no response") {
			t.Errorf("%s with the leafnode cut: want it named as no response, found %q", id, line)
		}
	}
	t.Logf("signet ping --env dr with the leafnode cut (exit %d):\n%s", code, out)
	if code, out := pingEnv("prod", prodIDs); code != 0 {
		t.Fatalf("signet ping --env prod with the DR leafnode cut: exit %d\n%s", code, out)
	}
	// The client and the hosts fail over between the hub's nodes.
	hub.Kill(0)
	if code, out := pingEnv("prod", prodIDs); code != 0 {
		t.Fatalf("signet ping --env prod with hub node n1 down: exit %d\n%s", code, out)
	}
	// The hosts that were on n1 watch the control bucket again from
	// another node: a lock published now reaches every one.
	if code, out := signet("lock", "--all", "--reason", "after failover", "--env", "prod"); code != 0 {
		t.Fatalf("signet lock --env prod with n1 down: exit %d\n%s", code, out)
	}
	untilAll("prod", prodIDs, "refused")
}

// lineOf returns the first line of out that names id as a word.
func lineOf(out, id string) string {
	for _, l := range strings.Split(out, "\n") {
		for _, w := range strings.FieldsFunc(l, func(r rune) bool { return r == ' ' || r == ':' || r == '\t' || r == ',' }) {
			if w == id {
				return l
			}
		}
	}
	return ""
}
