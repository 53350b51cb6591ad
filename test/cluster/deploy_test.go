package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/signetbus/signet/bus"
	"github.com/signetbus/signet/internal/broker"
	"github.com/signetbus/signet/internal/broker/brokertest"
	"github.com/signetbus/signet/workflows"
	"github.com/signetbus/signet/workflows/buscaller"
	"github.com/signetbus/signet/workflows/deploy"
	"github.com/signetbus/signet/workflows/fleettest"
)

const app = `version: 1
name: app
package: app
service: app
hosts: [role=app]
haproxy:
  backend: app
  lb_filter: [lb=prod]
health:
  url: http://127.0.0.1:8080/version
batch_size: 10
max_unavailable_per_zone: 4
maintenance: 30m
`

// responders is how many hosts the cluster test runs, plus one load
// balancer: at least 300, spread over the three nodes. The first
// deployed of them are the app the rolling deploy updates, in batches of
// ten; the others only answer pings. SIGNET_CLUSTER_HOSTS and
// SIGNET_CLUSTER_DEPLOY change both.
var (
	responders = envInt("SIGNET_CLUSTER_HOSTS", 300)
	deployed   = envInt("SIGNET_CLUSTER_DEPLOY", 30)
)

// events parses the deploy's JSON lines as they are written and calls
// hook on each.
type events struct {
	mu   sync.Mutex
	buf  []byte
	all  []workflows.Event
	hook func(workflows.Event)
}

func (r *events) Write(p []byte) (int, error) {
	r.mu.Lock()
	r.buf = append(r.buf, p...)
	var fresh []workflows.Event
	for {
		i := bytes.IndexByte(r.buf, '\n')
		if i < 0 {
			break
		}
		var e workflows.Event
		if json.Unmarshal(r.buf[:i], &e) == nil {
			r.all = append(r.all, e)
			fresh = append(fresh, e)
		}
		r.buf = r.buf[i+1:]
	}
	hook := r.hook
	r.mu.Unlock()
	for _, e := range fresh {
		if hook != nil {
			hook(e)
		}
	}
	return len(p), nil
}

// TestNodeKilledDuringRollingDeploy runs 300 responders spread over a
// three-node cluster and deploys the app hosts among them twice, killing
// a node in the second batch's update each time: first a node the
// operator is not connected to (the one with most responders), then, with
// that node back, the operator's own. Each deploy must ride through or
// stop with a step error that --resume finishes, no action may run twice
// on any host, the registry, run state and lock (three copies each) must
// stay readable while the node is down, and every responder must end up
// on a live node, answering a signed ping.
func TestNodeKilledDuringRollingDeploy(t *testing.T) {
	c := brokertest.StartCluster(t, 3, broker.Topology{}, nil)
	f := newFleet(t, "prod", hostIDs("web", responders), nil)
	for _, h := range hostIDs("web", responders)[deployed:] {
		f.sim.Nodes[h].Facts["role"] = "spare"
	}
	f.start(c.URLs(), nil)

	// The operator is on n1; the victim is the other node with the most
	// responders.
	victim := 1
	if len(f.on(c.URL(2))) > len(f.on(c.URL(1))) {
		victim = 2
	}
	for i := range 3 {
		t.Logf("n%d: %d responders", i+1, len(f.on(c.URL(i))))
	}
	onVictim := f.on(c.URL(victim))
	if len(onVictim) < responders/10 {
		t.Fatalf("only %d responders on n%d: the fleet is not spread over the nodes", len(onVictim), victim+1)
	}

	nc := operatorConn(t, c.URL(0)+","+c.URL(1)+","+c.URL(2))
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	reg := waitRegistry(t, ctx, nc, "prod", responders+1)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	store, err := workflows.NewKVStore(ctx, js, workflows.KVConfig{Signer: bus.KeySigner(f.op)})
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range []string{bus.RegistryBucket("prod"), "signet_runs", "signet_locks"} {
		if n := bucketReplicas(t, ctx, js, b); n != 3 {
			t.Fatalf("bucket %s has %d copies on a three-node cluster, want 3", b, n)
		}
	}
	appFile := filepath.Join(f.dir, "app.yaml")
	write(t, appFile, app)
	caller := &buscaller.Caller{Client: f.client(nc, reg), Registry: reg}
	opts := deploy.Options{AppFile: appFile, Version: "1.4.2", Env: "prod", Yes: true, Format: "json",
		Caller: caller, Store: store, User: "operator"}

	rollWithKill(t, ctx, c, f, opts, "1.4.2", victim)
	// Every responder of the dead node is back, on another node.
	deadline := time.Now().Add(30 * time.Second)
	for f.connected() < responders+1 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if n := f.connected(); n < responders+1 {
		t.Fatalf("%d of %d responders connected after the node died", n, responders+1)
	}
	if back := f.on(c.URL(victim)); len(back) > 0 {
		t.Fatalf("%d responders still on the dead node", len(back))
	}
	// And every one answers a signed ping through the cluster.
	pingAll(t, ctx, f, nc, reg, hostIDs("web", responders))

	// The dead node comes back; the next deploy loses n1, the node the
	// operator is connected to.
	c.Restart(victim)
	c.WaitJetStream(time.Minute)
	f.reset()
	f.sim.Update(func(s *fleettest.Fleet) { s.Available = append(s.Available, "1.4.3") })
	rollWithKill(t, ctx, c, f, opts, "1.4.3", 0)
	pingAll(t, ctx, f, nc, reg, hostIDs("web", responders))
}

// rollWithKill deploys version to the app hosts and kills node victim at
// the start of the second batch's update. The deploy must ride through,
// or stop with a step error that a resume finishes; while the node is
// down the registry, the run state and the lock must stay readable
// through the other nodes; no action may run twice on any host, and every
// app host ends on version, running, enabled and out of maintenance.
func rollWithKill(t *testing.T, ctx context.Context, c *brokertest.Cluster, f *fleet, opts deploy.Options, version string, victim int) {
	t.Helper()
	opts.Version = version
	var survivors []string
	for i := range c.Nodes {
		if i != victim {
			survivors = append(survivors, c.URL(i))
		}
	}
	var once sync.Once
	var didKill atomic.Bool
	killed := make(chan string, 1)
	out := &events{}
	out.hook = func(e workflows.Event) {
		if e.Type == workflows.EventStepStart && e.Batch == 2 && e.Step == deploy.StepUpdate {
			once.Do(func() {
				didKill.Store(true)
				c.Kill(victim)
				killed <- e.Run
			})
		}
	}
	opts.Output = out
	// KV data survives: read the registry, the run state and the lock
	// through a fresh connection while the node is down.
	survived := make(chan error, 1)
	go func() {
		var run string
		select {
		case run = <-killed:
		case <-ctx.Done():
			survived <- ctx.Err()
			return
		}
		survived <- kvSurvives(ctx, strings.Join(survivors, ","), run, f)
	}()
	t0 := time.Now()
	recap, err := deploy.Run(ctx, nil, opts)
	t.Logf("deploy ended after %s: %v", time.Since(t0).Round(time.Millisecond), err)
	var se *workflows.StepError
	switch {
	case err == nil:
		if recap.Status != workflows.StatusDone {
			t.Fatalf("recap %s, want done", recap.Status)
		}
	case errors.As(err, &se):
		if se.Host == "" || se.Step == "" {
			t.Fatalf("step error %+v: want a host and a step", se)
		}
		t.Logf("deploy halted at %s %s (%v); resuming %s", se.Host, se.Step, err, recap.Run)
		opts.Output = io.Discard
		if recap, err = deploy.Resume(ctx, nil, recap.Run, opts); err != nil || recap.Status != workflows.StatusDone {
			t.Fatalf("resume: %v (recap %+v)", err, recap)
		}
	default:
		t.Fatalf("the deploy ended without a known state: %v", err)
	}
	if !didKill.Load() {
		t.Fatal("the deploy never reached the second batch's update: no node was killed")
	}
	if err := <-survived; err != nil {
		t.Fatalf("KV data with n%d down: %v", victim+1, err)
	}

	if tw := f.twice(); len(tw) > 0 {
		t.Errorf("actions ran twice: %s", strings.Join(tw, "; "))
	}
	for _, h := range hostIDs("web", responders)[:deployed] {
		if n := f.sim.Node(h); n.Installed != version || !n.Running || n.Maintenance || f.sim.IsDrained(h) {
			t.Errorf("%s after the deploy: %+v drained=%v", h, n, f.sim.IsDrained(h))
		}
		if f.ran(h, "package.update") != 1 {
			t.Errorf("%s: package.update ran %d times, want once", h, f.ran(h, "package.update"))
		}
	}
}

// kvSurvives reads, through the surviving nodes, the registry (every
// host), the run's state and its lock.
func kvSurvives(ctx context.Context, urls, run string, f *fleet) error {
	nc, err := natsConnect(urls)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	var last error
	for ctx.Err() == nil {
		last = func() error {
			actx, cancel := context.WithTimeout(ctx, 3*time.Second)
			defer cancel()
			reg, err := bus.OpenRegistry(actx, nc, "prod")
			if err != nil {
				return err
			}
			regs, err := reg.List(actx)
			if err != nil {
				return err
			}
			if len(regs) < responders+1 {
				return errors.New("registry lost entries")
			}
			st, err := workflows.NewKVStore(actx, js, workflows.KVConfig{Signer: bus.KeySigner(f.op)})
			if err != nil {
				return err
			}
			if _, err := st.Load(actx, run); err != nil {
				return err
			}
			locks, err := js.KeyValue(actx, "signet_locks")
			if err != nil {
				return err
			}
			keys, err := locks.Keys(actx)
			if err != nil {
				return err
			}
			if !slices.ContainsFunc(keys, func(k string) bool { return strings.Contains(k, "app") }) {
				return errors.New("the deploy's lock is gone")
			}
			return nil
		}()
		if last == nil {
			return nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return last
}
