package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/crypto/ssh"

	"github.com/signetbus/signet/agents"
	"github.com/signetbus/signet/bus"
	"github.com/signetbus/signet/internal/audit"
	"github.com/signetbus/signet/internal/keys"
	"github.com/signetbus/signet/internal/keys/keytest"
	"github.com/signetbus/signet/plugins"
	_ "github.com/signetbus/signet/plugins/all" // the real DDLs the instant plugins declare
	"github.com/signetbus/signet/workflows"
	"github.com/signetbus/signet/workflows/fleettest"
)

// fleet is a set of signed responders (the real agents.Host, bus
// responder, policy and audit) whose plugins answer at once from an
// in-memory fleet (fleettest), and which counts every action each host
// executed.
type fleet struct {
	t          *testing.T
	dir        string
	collective string
	op         ssh.Signer
	known      strings.Builder
	sim        *fleettest.Fleet
	ddls       map[string]plugins.DDL

	mu    sync.Mutex
	runs  map[string]int        // "host agent.action" -> executions
	conns map[string]*nats.Conn // host -> its broker connection
	// urls overrides, per host, the broker URLs start gives it (a host
	// whose nats.urls name only one node).
	urls map[string]string
	// reachOnly are the hosts whose network reaches only the brokers of
	// their urls: they do not fail over to the nodes the cluster
	// advertises (a zone firewalled to its own node).
	reachOnly map[string]bool
	// hostStop stops one host's responder and waits until it is gone.
	hostStop map[string]func()
	// hook, when set, is called as a host runs an action ("agent.action"),
	// before the action returns.
	hook func(host, call string)
	// auth, when set, adds a host's broker credentials to its NATS
	// config (a locked-down broker's nkey_file and ca_file).
	auth func(id string, c *agents.NATSConfig)
	wg   sync.WaitGroup
	stop context.CancelFunc
	ctx  context.Context
}

const policy = `rules:
  - name: admin-all
    roles: [admin]
    allow: ["*"]
admin_roles: [admin]
`

// newFleet prepares a fleet of the collective; op is the operator key its
// hosts trust (keytest.Signer when nil).
func newFleet(t *testing.T, collective string, app []string, op ssh.Signer) *fleet {
	t.Helper()
	if op == nil {
		op = keytest.Signer(t)
	}
	f := &fleet{t: t, dir: t.TempDir(), collective: collective, op: op,
		runs: map[string]int{}, conns: map[string]*nats.Conn{}, ddls: map[string]plugins.DDL{},
		urls: map[string]string{}, hostStop: map[string]func(){}, reachOnly: map[string]bool{}}
	f.sim = fleettest.New(app, []string{"a", "b", "c"})
	delete(f.sim.Nodes, "lb2")
	auth := `roles="admin",name="operator" ` + string(ssh.MarshalAuthorizedKey(f.op.PublicKey()))
	write(t, filepath.Join(f.dir, "authorized_keys"), auth)
	write(t, filepath.Join(f.dir, "policy.yaml"), policy)
	for name, cfg := range map[string]string{"package": `{"backend":"apt"}`, "service": `{"backend":"runit","service_dir":"/tmp"}`,
		"haproxy": "", "maintenance": `{"backends":[{"alertmanager":{"url":"http://127.0.0.1:9093"}}]}`, "health": ""} {
		info, ok := plugins.Lookup(name)
		if !ok {
			t.Fatalf("plugin %s is not registered", name)
		}
		var raw json.RawMessage
		if cfg != "" {
			raw = json.RawMessage(cfg)
		}
		p, err := info.New(raw)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		f.ddls[name] = p.Describe()
	}
	f.ctx, f.stop = context.WithCancel(context.Background())
	t.Cleanup(func() {
		f.stop()
		f.wg.Wait()
	})
	return f
}

func write(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

// instant declares a real plugin's DDL and answers from the in-memory
// fleet, counting each execution.
type instant struct {
	f     *fleet
	agent string
}

func (p *instant) Describe() plugins.DDL { return p.f.ddls[p.agent] }

func (p *instant) Run(ctx context.Context, r *plugins.Request) (*plugins.Result, error) {
	key := r.Identity + " " + p.agent + "." + r.Action
	if s, ok := r.Params["server"].(string); ok {
		key += "@" + s
	}
	p.f.mu.Lock()
	p.f.runs[key]++
	hook := p.f.hook
	p.f.mu.Unlock()
	if hook != nil {
		defer hook(r.Identity, p.agent+"."+r.Action)
	}
	res, err := p.f.sim.Call(ctx, workflows.Call{Agent: p.agent, Action: r.Action, Params: map[string]any(r.Params), Hosts: []string{r.Identity}})
	if err != nil {
		return nil, err
	}
	if len(res) != 1 || !res[0].OK {
		return nil, fmt.Errorf("%s", res[0].Error)
	}
	b, _ := json.Marshal(res[0].Data) // round-trip as a reply would
	var data map[string]any
	json.Unmarshal(b, &data)
	return &plugins.Result{Changed: res[0].Changed, Summary: res[0].Summary, Data: data}, nil
}

// start starts one responder per simulated node, connected to urls (the
// comma-separated list a signetd config's nats.urls holds), with extra
// facts; it returns once all are subscribed.
func (f *fleet) start(urls string, facts map[string]string) {
	f.t.Helper()
	ids := make([]string, 0, len(f.sim.Nodes))
	for id := range f.sim.Nodes {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	ready := make(chan error, len(ids))
	for _, id := range ids {
		go func() { ready <- f.startHost(id, urls, facts) }()
	}
	for range ids {
		if err := <-ready; err != nil {
			f.t.Fatal(err)
		}
	}
}

func (f *fleet) startHost(id, urls string, extra map[string]string) error {
	f.mu.Lock()
	if u := f.urls[id]; u != "" {
		urls = u
	}
	f.mu.Unlock()
	dir := filepath.Join(f.dir, "hosts", id)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	hk, err := keys.LoadHostKey(filepath.Join(dir, "host_key"))
	if err != nil {
		return err
	}
	node := f.sim.Node(id)
	pl := map[string]plugins.Plugin{}
	for _, a := range node.Agents {
		pl[a] = &instant{f: f, agent: a}
	}
	facts := map[string]string{"hostname": id}
	for k, v := range node.Facts {
		facts[k] = v
	}
	for k, v := range extra {
		facts[k] = v
	}
	cfg := &agents.Config{
		Identity: id, Collective: f.collective,
		AuthorizedKeys: filepath.Join(f.dir, "authorized_keys"), Policy: filepath.Join(f.dir, "policy.yaml"),
		AuditLog: filepath.Join(dir, "audit.jsonl"), MaxRequestBytes: 64 << 10,
		MaxTTL: agents.Duration(10 * time.Minute), ClockSkew: agents.Duration(30 * time.Second), ActionTimeout: agents.Duration(time.Minute),
		MaxConcurrent: 8, RegistryTTL: agents.Duration(time.Minute), ShutdownTimeout: agents.Duration(5 * time.Second),
		NATS: agents.NATSConfig{URLs: strings.Split(urls, ",")},
	}
	if f.auth != nil {
		f.auth(id, &cfg.NATS)
	}
	host, err := agents.NewHost(agents.HostOptions{Identity: id, Collective: f.collective, Version: "test", Facts: facts,
		Plugins: pl, AuthorizedKeys: cfg.AuthorizedKeys, Policy: cfg.Policy, ActionTimeout: cfg.ActionTimeout.D()})
	if err != nil {
		return err
	}
	aud, err := audit.Open(cfg.AuditLog)
	if err != nil {
		return err
	}
	f.mu.Lock()
	only := f.reachOnly[id]
	f.mu.Unlock()
	var nc *nats.Conn
	if only {
		nc, err = nats.Connect(urls, nats.Name("signetd "+id), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond),
			nats.ReconnectBufSize(8<<20), nats.IgnoreDiscoveredServers())
	} else {
		nc, err = agents.Connect(cfg.NATS, "signetd "+id, slog.New(slog.DiscardHandler))
	}
	if err != nil {
		return err
	}
	f.mu.Lock()
	f.conns[id] = nc
	if line := keys.FormatKnownHost(id, hk.PublicKey()) + "\n"; !strings.Contains(f.known.String(), line) {
		f.known.WriteString(line)
	}
	f.mu.Unlock()
	started := make(chan struct{})
	done := make(chan error, 1)
	ctx, stop := context.WithCancel(f.ctx)
	gone := make(chan struct{})
	f.mu.Lock()
	f.hostStop[id] = func() { stop(); <-gone }
	f.mu.Unlock()
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		defer close(gone)
		defer aud.Close()
		defer host.Close()
		defer nc.Close()
		done <- agents.Serve(ctx, agents.ServeOptions{Conn: nc, Host: host, HostKey: hk, Audit: aud, Config: cfg, Version: "test",
			Ready: func() { close(started) }})
	}()
	select {
	case <-started:
		return nil
	case err := <-done:
		return fmt.Errorf("%s: %v", id, err)
	}
}

// on returns the hosts whose connection is on the broker at url now.
func (f *fleet) on(url string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for id, nc := range f.conns {
		if nc.ConnectedUrl() == url {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// connected counts the hosts connected to some broker.
func (f *fleet) connected() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, nc := range f.conns {
		if nc.IsConnected() {
			n++
		}
	}
	return n
}

// twice returns every "host agent.action" that ran more than once.
func (f *fleet) twice() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for k, n := range f.runs {
		if n > 1 {
			out = append(out, fmt.Sprintf("%s ran %d times", k, n))
		}
	}
	slices.Sort(out)
	return out
}

// knownHosts returns the fleet's known_hosts lines.
func (f *fleet) knownHosts() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.known.String()
}

// reset forgets the actions counted so far.
func (f *fleet) reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	clear(f.runs)
}

// ran returns how often host ran agent.action.
func (f *fleet) ran(host, call string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.runs[host+" "+call]
}

// client is an operator's signed client on conn, trusting the fleet's
// host keys.
func (f *fleet) client(nc *nats.Conn, reg *bus.Registry) *bus.Client {
	f.t.Helper()
	f.mu.Lock()
	known, err := keys.ParseKnownHosts(strings.NewReader(f.known.String()))
	f.mu.Unlock()
	if err != nil {
		f.t.Fatal(err)
	}
	c, err := bus.NewClient(bus.ClientConfig{Conn: nc, Collective: f.collective, Signer: f.op, User: "operator", HostKeys: known, Registry: reg})
	if err != nil {
		f.t.Fatal(err)
	}
	return c
}

// operatorConn connects as the signet client does: every URL, reconnecting
// for as long as the command runs; the first URL first.
func operatorConn(t *testing.T, urls string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(urls, nats.DontRandomize(), nats.MaxReconnects(-1), nats.ReconnectWait(time.Second),
		nats.ReconnectJitter(250*time.Millisecond, time.Second), nats.Timeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// hostIDs returns web001..webN.
func hostIDs(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%03d", prefix, i+1)
	}
	return out
}

func natsConnect(urls string) (*nats.Conn, error) {
	return nats.Connect(urls, nats.MaxReconnects(-1), nats.ReconnectWait(200*time.Millisecond))
}

// waitRegistry waits until n hosts are in the collective's registry and
// returns it.
func waitRegistry(t *testing.T, ctx context.Context, nc *nats.Conn, collective string, n int) *bus.Registry {
	t.Helper()
	var last error
	for ctx.Err() == nil {
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		reg, err := bus.OpenRegistry(actx, nc, collective)
		if err == nil {
			var regs []*bus.Registration
			if regs, err = reg.List(actx); err == nil && len(regs) >= n {
				cancel()
				return reg
			} else if err == nil {
				err = fmt.Errorf("%d of %d registered", len(regs), n)
			}
		}
		cancel()
		if last == nil || err.Error() != last.Error() {
			t.Logf("registry: %v", err)
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("registry of %s: %v", collective, last)
	return nil
}

// bucketReplicas is how many copies the cluster keeps of a bucket.
func bucketReplicas(t *testing.T, ctx context.Context, js jetstream.JetStream, bucket string) int {
	t.Helper()
	st, err := js.Stream(ctx, "KV_"+bucket)
	if err != nil {
		t.Fatal(err)
	}
	return st.CachedInfo().Config.Replicas
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// ping sends one signed rpcutil ping to the named hosts and returns each
// host's status.
func ping(t *testing.T, ctx context.Context, c *bus.Client, ids []string, timeout time.Duration) map[string]bus.ResultStatus {
	t.Helper()
	out, err := c.Do(ctx, bus.Query{Agent: "rpcutil", Action: "ping", Targets: ids, Timeout: timeout})
	if err != nil && out == nil {
		t.Fatalf("ping: %v", err)
	}
	got := map[string]bus.ResultStatus{}
	for _, r := range out.Results {
		got[r.Identity] = r.Status
	}
	return got
}

// pingAll checks that every host answers a signed ping.
func pingAll(t *testing.T, ctx context.Context, f *fleet, nc *nats.Conn, reg *bus.Registry, ids []string) {
	t.Helper()
	got := ping(t, ctx, f.client(nc, reg), ids, 30*time.Second)
	var bad []string
	for _, id := range ids {
		if got[id] != bus.ResultOK {
			bad = append(bad, fmt.Sprintf("%s: %q", id, got[id]))
		}
	}
	if len(bad) > 0 {
		t.Fatalf("%d of %d hosts did not answer the ping: %s", len(bad), len(ids), strings.Join(bad[:min(len(bad), 10)], ", "))
	}
}

// restartHost stops host id's responder and starts it again connected to
// urls (its signetd restarted with another nats.urls); with only, its
// network reaches no other broker.
func (f *fleet) restartHost(id, urls string, only bool) {
	f.t.Helper()
	f.mu.Lock()
	stop := f.hostStop[id]
	f.urls[id] = urls
	f.reachOnly[id] = only
	delete(f.conns, id)
	f.mu.Unlock()
	if stop != nil {
		stop()
	}
	if err := f.startHost(id, urls, nil); err != nil {
		f.t.Fatal(err)
	}
}
