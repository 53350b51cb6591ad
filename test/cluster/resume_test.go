package cluster

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/signetbus/signet/bus"
	"github.com/signetbus/signet/internal/broker"
	"github.com/signetbus/signet/internal/broker/brokertest"
	"github.com/signetbus/signet/internal/cli"
	"github.com/signetbus/signet/internal/keys"
	"github.com/signetbus/signet/workflows"
)

// TestResumeAfterNodeKilled forces the branch a node kill rarely takes:
// the deploy halts. One app host of the second batch reaches only node n2
// (a zone firewalled to its own broker: a host that merely lists one node
// still fails over to the nodes the cluster advertises). n2 dies while
// that host starts its service, after it was updated, so its reply is
// lost with the node and it cannot fail over. The real `signet deploy`
// must halt with the run's state (failed, at which host and step) and the
// command that resumes it; the run state, the lock and the registry
// (three copies each) stay readable through the two surviving nodes. Once
// the host reaches every node, `signet deploy --resume` from a bastion
// that knows only the survivors finishes the run with n2 still down: the
// hosts' own audit logs show no request executed twice, no action of the
// run that changed a host twice (the start the host ran is asserted again,
// a no-op), and one package update per host.
func TestResumeAfterNodeKilled(t *testing.T) {
	c := brokertest.StartCluster(t, 3, broker.Topology{}, nil)
	const victim = 1 // n2
	survivors := c.URL(0) + "," + c.URL(2)

	dir := t.TempDir()
	opKey := filepath.Join(dir, "operator_key")
	if _, err := keys.Generate(opKey, "operator@bastion", nil); err != nil {
		t.Fatal(err)
	}
	op, err := keys.LoadSigner(opKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	ids := hostIDs("web", 30)
	f := newFleet(t, "prod", ids, op)
	f.start(c.URLs(), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	waitRegistry(t, ctx, operatorConn(t, c.URLs()), "prod", len(ids)+1)

	// A short stop_timeout bounds the start step to 11s: the halt comes
	// that long after the kill.
	write(t, filepath.Join(dir, "app.yaml"), app+"stop_timeout: 1s\n")
	config := func(name, urls string) string {
		p := filepath.Join(dir, name)
		write(t, p, "user: operator\nkey: operator_key\nknown_hosts: known_hosts\ncollective: prod\nnats:\n  urls: ["+urls+"]\nruns: runs\napps: .\ntimeout: 5s\ndiscovery_timeout: 1s\n")
		return p
	}
	bastion, survivorBastion := config("client.yaml", c.URLs()), config("survivors.yaml", survivors)
	signet := func(cfg string, args ...string) (int, string) {
		t.Helper()
		var out strings.Builder
		var mu sync.Mutex
		w := writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return out.Write(p) })
		env := map[string]string{"SIGNET_CONFIG": cfg, "USER": "operator", "HOME": dir}
		code := cli.Main(ctx, args, cli.IO{In: strings.NewReader(""), Out: w, Err: w, Getenv: func(k string) string { return env[k] }})
		mu.Lock()
		defer mu.Unlock()
		return code, out.String()
	}

	// The plan names the second batch; its first host is made to reach
	// only n2.
	write(t, filepath.Join(dir, "known_hosts"), f.knownHosts())
	code, out := signet(bastion, "deploy", filepath.Join(dir, "app.yaml"), "1.4.2", "--env", "prod", "--plan")
	if code != 0 {
		t.Fatalf("signet deploy --plan: exit %d\n%s", code, out)
	}
	batch2 := regexp.MustCompile(`(?m)^batch 2/\d+: (\S+?)[ ,]`).FindStringSubmatch(out)
	if batch2 == nil {
		t.Fatalf("no second batch in the plan:\n%s", out)
	}
	pinned := batch2[1]
	f.restartHost(pinned, c.URL(victim), true)
	if got := f.on(c.URL(victim)); !slices.Contains(got, pinned) {
		t.Fatalf("%s is not on n2", pinned)
	}
	var once sync.Once
	f.mu.Lock()
	f.hook = func(host, call string) {
		if host == pinned && call == "service.start" {
			once.Do(func() { c.Kill(victim) })
		}
	}
	f.mu.Unlock()

	// The deploy halts: n2 died under the pinned host's start.
	t0 := time.Now()
	code, out = signet(bastion, "deploy", filepath.Join(dir, "app.yaml"), "1.4.2", "--env", "prod", "--yes", "--output", "text")
	t.Logf("signet deploy (exit %d after %s):\n%s", code, time.Since(t0).Round(time.Millisecond), out)
	if c.Nodes[victim].Running() {
		t.Fatal("n2 was never killed: the pinned host did not reach its start")
	}
	if code == 0 {
		t.Fatal("the deploy rode through: the pinned host answered without n2")
	}
	m := regexp.MustCompile(`run ([0-9a-f]+) failed after`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("the halt does not say the run failed and which run:\n%s", out)
	}
	run := m[1]
	for _, want := range []string{pinned + ": start: ", "signet deploy --resume " + run} {
		if !strings.Contains(out, want) {
			t.Errorf("the halt does not say %q", want)
		}
	}

	// With n2 down, the state is readable through the survivors: the
	// run is recorded failed, the lock was released, every host is in
	// the registry.
	nc := operatorConn(t, survivors)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	store, err := workflows.NewKVStore(ctx, js, workflows.KVConfig{Signer: bus.KeySigner(op)})
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Load(ctx, run)
	if err != nil {
		t.Fatal(err)
	}
	if st.Status != workflows.StatusFailed || st.Hosts[pinned].Status != workflows.HostFailed {
		t.Fatalf("run state: %s, %s: %s; want failed, and %s failed", st.Status, pinned, st.Hosts[pinned].Status, pinned)
	}
	locks, err := js.KeyValue(ctx, "signet_locks")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := locks.Get(ctx, "app.prod"); err == nil {
		t.Fatal("the halted run still holds its lock")
	}
	for _, b := range []string{bus.RegistryBucket("prod"), "signet_runs", "signet_locks"} {
		if n := bucketReplicas(t, ctx, js, b); n != 3 {
			t.Fatalf("bucket %s has %d copies, want 3", b, n)
		}
	}
	waitRegistry(t, ctx, nc, "prod", len(ids)+1)

	// The host reaches every node again (its network or nats.urls
	// fixed); n2 stays down.
	f.restartHost(pinned, c.URLs(), false)
	for end := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if code, _ := signet(survivorBastion, "ping", "-I", pinned); code == 0 {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("%s does not answer after failing over", pinned)
		}
	}
	code, out = signet(survivorBastion, "deploy", "--resume", run, "--yes", "--output", "text")
	t.Logf("signet deploy --resume %s (exit %d):\n%s", run, code, out)
	if code != 0 || !strings.Contains(out, "run "+run+" done") {
		t.Fatalf("signet deploy --resume %s: exit %d", run, code)
	}

	// Every app host is on the version, in rotation, updated once.
	for _, h := range ids {
		if n := f.sim.Node(h); n.Installed != "1.4.2" || !n.Running || n.Maintenance || f.sim.IsDrained(h) {
			t.Errorf("%s after the resume: %+v drained=%v", h, n, f.sim.IsDrained(h))
		}
		if n := f.ran(h, "package.update"); n != 1 {
			t.Errorf("%s: package.update ran %d times, want once", h, n)
		}
	}
	checkAudit(t, f, append(ids, "lb1"), run)
}

// checkAudit reads every host's audit log: no request was executed twice,
// no action of the run changed a host twice (a resumed run observes the
// hosts it did not finish and asserts, without changing them, what is
// already so: a running service is started again, a no-op), and every
// app host's package was updated once.
func checkAudit(t *testing.T, f *fleet, hosts []string, run string) {
	t.Helper()
	for _, h := range hosts {
		fh, err := os.Open(filepath.Join(f.dir, "hosts", h, "audit.jsonl"))
		if err != nil {
			t.Fatal(err)
		}
		executed, changed := map[string]int{}, map[string]int{}
		updates := 0
		sc := bufio.NewScanner(fh)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var r bus.AuditRecord
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				t.Fatalf("%s audit: %v", h, err)
			}
			if r.Decision != bus.DecisionAccepted || r.Provenance == nil || r.Provenance.Run != run {
				continue
			}
			executed[r.RequestID]++
			if r.Changed {
				call := r.Agent + "." + r.Action
				if s, ok := r.Params["server"].(string); ok {
					call += "@" + s // a load balancer's drain or enable of one server
				}
				changed[call]++
			}
			if r.Agent == "package" && r.Action == "update" {
				updates++
			}
		}
		fh.Close()
		for id, n := range executed {
			if n > 1 {
				t.Errorf("%s executed request %s %d times", h, id, n)
			}
		}
		for call, n := range changed {
			if n > 1 {
				t.Errorf("%s: %s changed the host %d times in run %s", h, call, n, run)
			}
		}
		if h != "lb1" && updates != 1 {
			t.Errorf("%s: the audit log holds %d package updates of run %s, want 1", h, updates, run)
		}
	}
}

type writerFunc func([]byte) (int, error)

func (w writerFunc) Write(p []byte) (int, error) { return w(p) }
