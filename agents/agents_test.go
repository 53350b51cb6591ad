package agents

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"golang.org/x/crypto/ssh"

	"github.com/signetbus/signet/bus"
	"github.com/signetbus/signet/internal/broker"
	"github.com/signetbus/signet/plugins"
)

// slow is a test plugin: "sleep" waits for its duration or the deadline,
// "fail" fails. It stands in for a real plugin so the host's own rules
// (validation, timeouts, errors) are tested apart from any backend.
type slow struct{}

func (slow) Describe() plugins.DDL {
	return plugins.DDL{Name: "slow", Actions: []plugins.Action{
		{Name: "sleep", Timeout: 200 * time.Millisecond, Inputs: []plugins.Input{
			{Name: "for", Type: plugins.TypeDuration, Required: true},
			{Name: "times", Type: plugins.TypeInteger, Min: plugins.Float(1), Max: plugins.Float(3), Default: int64(1)},
		}},
		{Name: "fail"},
	}}
}

func (slow) Run(ctx context.Context, r *plugins.Request) (*plugins.Result, error) {
	if r.Action == "fail" {
		return nil, fmt.Errorf("backend said no")
	}
	select {
	case <-time.After(r.Params.Duration("for")):
		return &plugins.Result{Changed: true, Summary: fmt.Sprintf("slept %d times", r.Params.Int("times"))}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

type memAudit struct {
	mu   sync.Mutex
	recs []*bus.AuditRecord
}

func (a *memAudit) Audit(r *bus.AuditRecord) error {
	a.mu.Lock()
	a.recs = append(a.recs, r)
	a.mu.Unlock()
	return nil
}

func signer(t *testing.T) ssh.Signer {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

type fixture struct {
	dir     string
	op      ssh.Signer
	hostKey ssh.Signer
	host    *Host
	cfg     *Config
}

func newFixture(t *testing.T, roles, policy string) *fixture {
	dir := t.TempDir()
	f := &fixture{dir: dir, op: signer(t), hostKey: signer(t)}
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(f.op.PublicKey())))
	os.WriteFile(filepath.Join(dir, "authorized_keys"), []byte(fmt.Sprintf("roles=%q,name=\"alice\" %s\n", roles, line)), 0o600)
	os.WriteFile(filepath.Join(dir, "policy.yaml"), []byte(policy), 0o600)
	f.cfg = &Config{Identity: "web1", Collective: "t", AuthorizedKeys: filepath.Join(dir, "authorized_keys"), Policy: filepath.Join(dir, "policy.yaml")}
	f.cfg.setDefaults()
	f.cfg.RegistryTTL = Duration(3 * time.Second)
	h, err := NewHost(HostOptions{Identity: "web1", Collective: "t", Facts: map[string]string{"env": "prod"},
		Plugins: map[string]plugins.Plugin{"slow": slow{}}, AuthorizedKeys: f.cfg.AuthorizedKeys, Policy: f.cfg.Policy, ActionTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	f.host = h
	return f
}

func (f *fixture) call(t *testing.T, action string, params map[string]any) *bus.Reply {
	p, _ := f.host.LookupKey(f.op.PublicKey().Marshal())
	if p == nil {
		t.Fatal("operator key not trusted")
	}
	return f.host.Handle(context.Background(), &bus.Call{Principal: p, Request: &bus.Request{ID: "r", Agent: "slow", Action: action, Params: params}})
}

func TestHandleRules(t *testing.T) {
	f := newFixture(t, "deploy", `rules:
  - name: deploy-prod
    roles: [deploy]
    allow: ["slow.sleep", "rpcutil.*"]
    where: ["env=prod"]
`)
	cases := []struct {
		name   string
		action string
		params map[string]any
		status bus.Status
		code   string
		msg    string
	}{
		{"ok, string coerced to integer", "sleep", map[string]any{"for": "1ms", "times": "2"}, bus.StatusOK, "", ""},
		{"missing required", "sleep", map[string]any{}, bus.StatusRefused, bus.CodeInvalidParams, `invalid parameter "for" for sleep: required parameter is missing`},
		{"out of range", "sleep", map[string]any{"for": "1ms", "times": "9"}, bus.StatusRefused, bus.CodeInvalidParams, `9 is above the maximum 3`},
		{"not a duration", "sleep", map[string]any{"for": "soon"}, bus.StatusRefused, bus.CodeInvalidParams, `want a duration such as 90s or 5m, got "soon"`},
		{"declared timeout", "sleep", map[string]any{"for": "10s"}, bus.StatusFailed, bus.CodeTimeout, "deadline exceeded"},
		{"denied by policy", "fail", nil, bus.StatusRefused, bus.CodeDenied, `policy denies alice: no rule allows roles [deploy] to run slow.fail`},
		{"unknown action", "nope", nil, bus.StatusRefused, bus.CodeUnknownAction, `agent slow has no action "nope" (actions: fail, sleep)`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rep := f.call(t, c.action, c.params)
			if rep.Status != c.status || rep.Code != c.code || !strings.Contains(rep.Error, c.msg) {
				t.Fatalf("got %s %q %q, want %s %q containing %q", rep.Status, rep.Code, rep.Error, c.status, c.code, c.msg)
			}
		})
	}
	if rep := f.call(t, "sleep", map[string]any{"for": "1ms", "times": "2"}); rep.Summary != "slept 2 times" || !rep.Changed {
		t.Fatalf("reply %+v", rep)
	}
}

func TestReloadKeepsOldPolicyOnError(t *testing.T) {
	f := newFixture(t, "deploy", "rules:\n  - roles: [deploy]\n    allow: [\"slow.*\"]\n")
	if rep := f.call(t, "fail", nil); rep.Code != bus.CodeFailed || rep.Error != "backend said no" {
		t.Fatalf("before reload: %+v", rep)
	}
	os.WriteFile(f.cfg.Policy, []byte("rules: [oops"), 0o600)
	if err := f.host.Reload(); err == nil {
		t.Fatal("a broken policy reloaded without error")
	}
	if rep := f.call(t, "fail", nil); rep.Code != bus.CodeFailed {
		t.Fatalf("a failed reload changed the policy: %+v", rep)
	}
	os.WriteFile(f.cfg.Policy, []byte("rules: []\n"), 0o600)
	if err := f.host.Reload(); err != nil {
		t.Fatal(err)
	}
	if rep := f.call(t, "fail", nil); rep.Code != bus.CodeDenied {
		t.Fatalf("after reload to an empty policy: %+v", rep)
	}
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestServeSurvivesBrokerRestart stops the broker under a serving host and
// starts it again on the same port: the host reconnects by itself, answers
// again and registers again.
func TestServeSurvivesBrokerRestart(t *testing.T) {
	f := newFixture(t, "admin", "rules:\n  - roles: [admin]\n    allow: [\"*\"]\n")
	port := freePort(t)
	store := t.TempDir()
	start := func() interface{ Shutdown() } {
		s, err := broker.Start(broker.Config{Port: port, StoreDir: store})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s := start()
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	nc, err := Connect(NATSConfig{URLs: []string{url}}, "test", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	aud := &memAudit{}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error)
	go func() {
		served <- Serve(ctx, ServeOptions{Conn: nc, Host: f.host, HostKey: f.hostKey, Audit: aud, Config: f.cfg})
	}()
	ping := func() error {
		cnc, err := nats.Connect(url, nats.MaxReconnects(0))
		if err != nil {
			return err
		}
		defer cnc.Close()
		c, err := bus.NewClient(bus.ClientConfig{Conn: cnc, Collective: "t", Signer: f.op, User: "alice",
			HostKeys: keyMap{"web1": f.hostKey.PublicKey()}})
		if err != nil {
			return err
		}
		out, err := c.Do(context.Background(), bus.Query{Agent: "rpcutil", Action: "ping", Targets: []string{"web1"}, Timeout: time.Second})
		if err != nil {
			return err
		}
		if out.Results[0].Status != bus.ResultOK {
			return fmt.Errorf("%s: %s", out.Results[0].Status, out.Results[0].Error)
		}
		return nil
	}
	eventually(t, ping)
	s.Shutdown()
	time.Sleep(500 * time.Millisecond)
	if err := ping(); err == nil {
		t.Fatal("ping succeeded with the broker down")
	}
	s = start()
	defer s.Shutdown()
	eventually(t, ping)
	eventually(t, func() error {
		reg, err := bus.OpenRegistry(context.Background(), nc, "t")
		if err != nil {
			return err
		}
		l, err := reg.List(context.Background())
		if err != nil || len(l) != 1 {
			return fmt.Errorf("registry has %d entries (%v)", len(l), err)
		}
		return nil
	})
	cancel()
	if err := <-served; err != nil {
		t.Fatal(err)
	}
}

type keyMap map[string]ssh.PublicKey

func (k keyMap) Lookup(id string) (ssh.PublicKey, bool) { p, ok := k[id]; return p, ok }

func eventually(t *testing.T, fn func() error) {
	t.Helper()
	var err error
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if err = fn(); err == nil {
			return
		}
	}
	t.Fatalf("not within 20s: %v", err)
}
