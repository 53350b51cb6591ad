package bus

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"golang.org/x/crypto/ssh"

	"github.com/signetbus/signet/internal/broker/brokertest"
	"github.com/signetbus/signet/internal/keys/keytest"
	"github.com/signetbus/signet/internal/sshsig"
	"github.com/signetbus/signet/internal/wire"
)

var newSigner = keytest.Signer

type trustMap map[string]*Principal

func (m trustMap) LookupKey(b []byte) (*Principal, bool) { p, ok := m[string(b)]; return p, ok }

type hostKeys map[string]ssh.PublicKey

func (h hostKeys) Lookup(id string) (ssh.PublicKey, bool) { k, ok := h[id]; return k, ok }

type memAudit struct {
	mu   sync.Mutex
	recs []*AuditRecord
}

func (a *memAudit) Audit(r *AuditRecord) error {
	a.mu.Lock()
	a.recs = append(a.recs, r)
	a.mu.Unlock()
	return nil
}

func (a *memAudit) find(code string) *AuditRecord {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, r := range a.recs {
		if r.Code == code {
			return r
		}
	}
	return nil
}

// echoHandler answers rpcutil.ping and echoes params for test.echo.
type echoHandler struct{ identity string }

func (h echoHandler) Handle(ctx context.Context, c *Call) *Reply {
	switch c.Request.Agent + "." + c.Request.Action {
	case "rpcutil.ping":
		return &Reply{Status: StatusOK, Summary: "pong"}
	case "test.echo":
		return &Reply{Status: StatusOK, Data: map[string]any{"params": c.Request.Params, "by": c.Principal.Name}}
	case "test.sleep":
		select {
		case <-time.After(5 * time.Second):
		case <-ctx.Done():
		}
		return &Reply{Status: StatusOK}
	}
	return &Reply{Status: StatusRefused, Code: CodeUnknownAction, Error: "unknown action"}
}

type fleet struct {
	srv      interface{ Shutdown() }
	url      string
	nc       *nats.Conn
	operator ssh.Signer
	trust    trustMap
	keys     hostKeys
	audits   map[string]*memAudit
	resp     map[string]*Responder
}

func (f *fleet) client(t testing.TB, signer ssh.Signer, reg *Registry) *Client {
	t.Helper()
	c, err := NewClient(ClientConfig{Conn: f.nc, Collective: "test", Signer: signer, User: "alice", HostKeys: f.keys, Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// emptyFleet is a fleet on a real embedded broker with no responder yet,
// whose operator alice (role admin) every host will trust.
func emptyFleet(t testing.TB) *fleet {
	t.Helper()
	s := brokertest.Start(t)
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	f := &fleet{srv: s, url: s.ClientURL(), nc: nc, operator: newSigner(t), trust: trustMap{}, keys: hostKeys{},
		audits: map[string]*memAudit{}, resp: map[string]*Responder{}}
	op := f.operator.PublicKey()
	f.trust[string(op.Marshal())] = &Principal{Name: "alice", Roles: []string{"admin"}, Fingerprint: ssh.FingerprintSHA256(op), Key: op}
	return f
}

// startFleet starts n responders web1..webN, zone a/b/c by number mod 3.
func startFleet(t testing.TB, n int, opts ...func(*ResponderConfig)) *fleet {
	t.Helper()
	f := emptyFleet(t)
	nc := f.nc
	for i := 1; i <= n; i++ {
		id := fmt.Sprintf("web%d", i)
		hk := newSigner(t)
		f.keys[id] = hk.PublicKey()
		node := &Node{Identity: id, Facts: map[string]string{"zone": string(rune('a' + (i-1)%3)), "n": fmt.Sprint(i)}, Agents: []string{"rpcutil", "test"}}
		f.audits[id] = &memAudit{}
		cfg := ResponderConfig{Conn: nc, Collective: "test", HostKey: hk, Node: func() *Node { return node },
			Trust: f.trust, Handler: echoHandler{id}, Audit: f.audits[id]}
		for _, o := range opts {
			o(&cfg)
		}
		r, err := NewResponder(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Start(); err != nil {
			t.Fatal(err)
		}
		f.resp[id] = r
		t.Cleanup(func() { r.Shutdown(context.Background()) })
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return f
}

func statuses(o *Outcome) string {
	var b strings.Builder
	for _, r := range o.Results {
		fmt.Fprintf(&b, "%s=%s ", r.Identity, r.Status)
	}
	return strings.TrimSpace(b.String())
}

func TestPingBroadcastDiscovery(t *testing.T) {
	f := startFleet(t, 3)
	c := f.client(t, f.operator, nil)
	out, err := c.Do(context.Background(), Query{Agent: "rpcutil", Action: "ping", DiscoveryTimeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if got := statuses(out); got != "web1=ok web2=ok web3=ok" {
		t.Fatalf("got %s", got)
	}
	for _, r := range out.Results {
		if r.Reply.Summary != "pong" || r.Reply.Identity != r.Identity {
			t.Errorf("%s: reply %+v", r.Identity, r.Reply)
		}
	}
}

func TestFilterAndDirect(t *testing.T) {
	f := startFleet(t, 6)
	c := f.client(t, f.operator, nil)
	ctx := context.Background()
	out, err := c.Do(ctx, Query{Agent: "test", Action: "echo", Filter: Filter{Fact: []string{"zone=b"}}, DiscoveryTimeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if got := statuses(out); got != "web2=ok web5=ok" {
		t.Fatalf("zone=b: %s", got)
	}
	out, err = c.Do(ctx, Query{Agent: "test", Action: "echo", Targets: []string{"web4"}, Params: map[string]any{"x": "1"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := statuses(out); got != "web4=ok" {
		t.Fatalf("direct: %s", got)
	}
	if got := out.Results[0].Reply.Data["params"].(map[string]any)["x"]; got != "1" {
		t.Fatalf("params echoed %v", got)
	}
	if _, err := c.Do(ctx, Query{Agent: "test", Action: "echo", Filter: Filter{Fact: []string{"zone=z"}}, DiscoveryTimeout: 300 * time.Millisecond}); err != ErrNoMatch {
		t.Fatalf("err = %v, want ErrNoMatch", err)
	}
}

func TestRegistryFinishesWhenAllExpectedAnswer(t *testing.T) {
	f := startFleet(t, 4)
	ctx := context.Background()
	reg, err := CreateRegistry(ctx, f.nc, "test", time.Minute, 0)
	if err != nil {
		t.Fatal(err)
	}
	for id, r := range f.resp {
		n := r.cfg.Node()
		if err := reg.Put(ctx, r.cfg.HostKey, &Registration{Identity: id, Collective: "test", Facts: n.Facts, Agents: n.Agents}); err != nil {
			t.Fatal(err)
		}
	}
	// A host in the registry (and known_hosts) that is not running:
	// reported by name.
	ghost := newSigner(t)
	f.keys["ghost"] = ghost.PublicKey()
	if err := reg.Put(ctx, ghost, &Registration{Identity: "ghost", Collective: "test", Agents: []string{"rpcutil"}}); err != nil {
		t.Fatal(err)
	}
	c := f.client(t, f.operator, reg)
	out, err := c.Do(ctx, Query{Agent: "rpcutil", Action: "ping", Filter: Filter{Identity: []string{"/^web[12]$/", "ghost"}}, Timeout: 700 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if got := statuses(out); got != "ghost=no response web1=ok web2=ok" {
		t.Fatalf("got %s", got)
	}
	// With every expected host alive the call must not wait out the timeout.
	out, err = c.Do(ctx, Query{Agent: "rpcutil", Action: "ping", Filter: Filter{Fact: []string{"n<=4"}}, Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if got := statuses(out); got != "web1=ok web2=ok web3=ok web4=ok" {
		t.Fatalf("got %s", got)
	}
	if out.Elapsed > 30*time.Second {
		t.Fatalf("waited %s: the client did not finish on the last expected reply", out.Elapsed)
	}
}

// rawSend publishes a frame directly and returns the verified results.
func rawSend(t *testing.T, f *fleet, subject string, frame []byte) []Result {
	t.Helper()
	inbox := f.nc.NewInbox()
	sub, err := f.nc.SubscribeSync(inbox)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := f.nc.PublishMsg(&nats.Msg{Subject: subject, Reply: inbox, Data: frame}); err != nil {
		t.Fatal(err)
	}
	c := f.client(t, f.operator, nil)
	var out []Result
	for {
		m, err := sub.NextMsg(700 * time.Millisecond)
		if err != nil {
			return out
		}
		r, _ := c.verifySigned(m.Data)
		out = append(out, r)
	}
}

func baseRequest(f *fleet, signer ssh.Signer) *Request {
	return &Request{Version: ProtocolVersion, ID: NewID(), Sender: Sender{User: "alice", Key: ssh.FingerprintSHA256(signer.PublicKey())},
		Collective: "test", Agent: "test", Action: "echo", Params: map[string]any{"package": "nginx"},
		Targets: []string{"web1"}, Created: time.Now().UnixMilli(), TTL: 60}
}

func TestRefusals(t *testing.T) {
	f := startFleet(t, 2, func(c *ResponderConfig) { c.MaxRequestBytes = 4096; c.ClockSkew = 5 * time.Second })
	direct := NodeSubject("test", "web1")
	stranger := newSigner(t)
	signed := func(r *Request, s ssh.Signer) []byte {
		b, err := SignRequest(s, r)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	tampered := func() []byte {
		b := signed(baseRequest(f, f.operator), f.operator)
		return bytes.Replace(b, []byte(`"nginx"`), []byte(`"evil!"`), 1)
	}
	replayed := signed(baseRequest(f, f.operator), f.operator)
	if rs := rawSend(t, f, direct, replayed); len(rs) != 1 || rs[0].Status != ResultOK {
		t.Fatalf("first send of the replayed request: %+v", rs)
	}
	cases := []struct {
		name    string
		subject string
		frame   func() []byte
		code    string
		reason  string
	}{
		{"tampered params", direct, tampered, CodeBadSignature, "signature does not verify"},
		{"untrusted key", direct, func() []byte { return signed(baseRequest(f, stranger), stranger) }, CodeUntrusted, "is not trusted on this host"},
		{"claimed key mismatch", direct, func() []byte {
			r := baseRequest(f, f.operator)
			r.Sender.Key = "SHA256:someoneelse"
			return signed(r, f.operator)
		}, CodeBadSignature, "claims key"},
		{"expired", direct, func() []byte {
			r := baseRequest(f, f.operator)
			r.Created = time.Now().Add(-153 * time.Second).UnixMilli()
			return signed(r, f.operator)
		}, CodeExpired, "request expired 1m33s ago (ttl 1m0s)"},
		{"future", direct, func() []byte {
			r := baseRequest(f, f.operator)
			r.Created = time.Now().Add(time.Hour).UnixMilli()
			return signed(r, f.operator)
		}, CodeFuture, "in the future"},
		{"ttl too long", direct, func() []byte {
			r := baseRequest(f, f.operator)
			r.TTL = 86400
			return signed(r, f.operator)
		}, CodeTTL, "exceeds this host's maximum"},
		{"replay", direct, func() []byte {
			// The id of a request that ran, with other content.
			rep, _, _ := ParseRequest(replayed)
			r := baseRequest(f, f.operator)
			r.ID = rep.ID
			return signed(r, f.operator)
		}, CodeReplay, "already seen with other content"},
		{"signed before the responder started", direct, func() []byte {
			r := baseRequest(f, f.operator)
			r.Created = time.Now().Add(-20 * time.Second).UnixMilli() // fresh, but older than the responder
			return signed(r, f.operator)
		}, CodeReplay, "before this host's responder started"},
		{"oversized", direct, func() []byte {
			r := baseRequest(f, f.operator)
			r.Params = map[string]any{"blob": strings.Repeat("x", 5000)}
			return signed(r, f.operator)
		}, CodeTooLarge, "this host accepts at most 4096"},
		{"direct request for another host", direct, func() []byte {
			r := baseRequest(f, f.operator)
			r.Targets = []string{"web2"}
			return signed(r, f.operator)
		}, CodeWrongHost, "not this host"},
		{"wrong collective", direct, func() []byte {
			r := baseRequest(f, f.operator)
			r.Collective = "prod"
			return signed(r, f.operator)
		}, CodeCollective, `collective "prod"`},
		{"reply signature reused as request", direct, func() []byte {
			// The request payload, framed with a signature made under the
			// reply namespace by the same (trusted) key.
			body, _ := json.Marshal(baseRequest(f, f.operator))
			sig, err := sshsig.Sign(rand.Reader, f.operator, ReplyNamespace, body)
			if err != nil {
				t.Fatal(err)
			}
			return (&wire.Envelope{Kind: wire.KindRequest, Payload: body, Sig: sig.Marshal()}).Marshal()
		}, CodeBadSignature, "namespace"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rs := rawSend(t, f, c.subject, c.frame())
			if len(rs) != 1 {
				t.Fatalf("got %d replies, want 1: %+v", len(rs), rs)
			}
			r := rs[0]
			if r.Status != ResultRefused || r.Reply.Code != c.code || !strings.Contains(r.Error, c.reason) {
				t.Fatalf("got %s code=%q error=%q, want refused %q containing %q", r.Status, r.Reply.Code, r.Error, c.code, c.reason)
			}
			if rec := f.audits["web1"].find(c.code); rec == nil || rec.Decision != "refused" {
				t.Fatalf("no refused audit record with code %s", c.code)
			}
		})
	}
	// Garbage is dropped unanswered but still audited.
	if rs := rawSend(t, f, direct, []byte("GET / HTTP/1.0")); len(rs) != 0 {
		t.Fatalf("garbage got replies: %+v", rs)
	}
	if rec := f.audits["web1"].find(CodeMalformed); rec == nil || rec.Decision != "dropped" {
		t.Fatal("garbage was not audited as dropped")
	}
	// A run id that is not one: it would land in every auditor's table.
	r := baseRequest(f, f.operator)
	r.Provenance = &Provenance{Run: "7f3a\nweb9\tok"}
	if rs := rawSend(t, f, direct, signed(r, f.operator)); len(rs) != 1 || rs[0].Status != ResultRefused || rs[0].Reply.Code != CodeMalformed || !strings.Contains(rs[0].Error, "run holds a control character") {
		t.Fatalf("a run id with a newline: %+v", rs)
	}
}

func TestForgedRepliesAreNeverSuccess(t *testing.T) {
	f := startFleet(t, 1, func(c *ResponderConfig) {
		c.Handler = HandlerFunc(func(ctx context.Context, call *Call) *Reply {
			time.Sleep(300 * time.Millisecond) // let the forger answer first
			return &Reply{Status: StatusOK, Summary: "real"}
		})
	})
	c := f.client(t, f.operator, nil)
	// The forger listens on the same subject and answers first: with a
	// wrong key, unsigned garbage, and a key of a host the client does not know.
	forger := newSigner(t)
	sub, err := f.nc.Subscribe(NodeSubject("test", "web1"), func(m *nats.Msg) {
		req, _, _ := ParseRequest(m.Data)
		for _, id := range []string{"web1", "intruder"} {
			b, _ := SignReply(forger, &Reply{Version: 1, RequestID: req.ID, Identity: id, Status: StatusOK, Summary: "forged"})
			m.Respond(b)
		}
		m.Respond([]byte("unsigned"))
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	out, err := c.Do(context.Background(), Query{Agent: "test", Action: "echo", Targets: []string{"web1"}, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	got := map[ResultStatus]int{}
	for _, r := range out.Results {
		got[r.Status]++
		if r.Status == ResultOK && r.Reply.Summary != "real" {
			t.Fatalf("a forged reply counted as success: %+v", r)
		}
	}
	if got[ResultOK] != 1 || got[ResultForged] != 2 || got[ResultUnknownHost] != 1 {
		t.Fatalf("statuses %v: %s", got, statuses(out))
	}
	if ok, failed, _ := out.Counts(); ok != 1 || failed != 3 {
		t.Fatalf("counts ok=%d failed=%d", ok, failed)
	}
}

func TestNoResponseAndShutdownFinishesInFlight(t *testing.T) {
	f := startFleet(t, 1)
	c := f.client(t, f.operator, nil)
	done := make(chan *Outcome)
	go func() {
		out, _ := c.Do(context.Background(), Query{Agent: "test", Action: "sleep", Targets: []string{"web1"}, Timeout: 10 * time.Second})
		done <- out
	}()
	time.Sleep(300 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := f.resp["web1"].Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	out := <-done
	if got := statuses(out); got != "web1=ok" {
		t.Fatalf("in-flight action was not finished before shutdown: %s", got)
	}
	f.keys["web9"] = newSigner(t).PublicKey() // known, never started
	out, err := c.Do(context.Background(), Query{Agent: "test", Action: "echo", Targets: []string{"web1", "web9"}, Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if got := statuses(out); got != "web1=no response web9=no response" {
		t.Fatalf("got %s", got)
	}
	// Nobody listens on their subjects any more: the broker says so.
	if !strings.Contains(out.Results[0].Error, "nothing listens on web1's subject") {
		t.Fatalf("error %q", out.Results[0].Error)
	}
}

// TestBrokerGoneMidRequest shuts the broker down while a request is in
// flight: the client reports the hosts as not answering, warns that the
// broker connection was lost, and returns instead of hanging.
func TestBrokerGoneMidRequest(t *testing.T) {
	f := startFleet(t, 2)
	nc, err := nats.Connect(f.url, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	c, err := NewClient(ClientConfig{Conn: nc, Collective: "test", Signer: f.operator, User: "alice", HostKeys: f.keys})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(300 * time.Millisecond)
		f.srv.Shutdown()
	}()
	out, err := c.Do(context.Background(), Query{Agent: "test", Action: "sleep", Targets: []string{"web1", "web2"}, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if got := statuses(out); got != "web1=no response web2=no response" {
		t.Fatalf("got %s", got)
	}
	if len(out.Warnings) != 1 || !strings.Contains(out.Warnings[0], "lost the connection to the broker") {
		t.Fatalf("warnings %q", out.Warnings)
	}
}

// TestRegistryMissesAHost: a host that matches a broadcast but is missing
// from the registry (its entry expired or was deleted) is not named in the
// signed request, so it does not run it, and the client does not wait
// for it.
func TestRegistryMissesAHost(t *testing.T) {
	f := startFleet(t, 3)
	ctx := context.Background()
	reg, err := CreateRegistry(ctx, f.nc, "test", time.Minute, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"web1", "web2"} { // web3 is not registered
		n := f.resp[id].cfg.Node()
		if err := reg.Put(ctx, f.resp[id].cfg.HostKey, &Registration{Identity: id, Collective: "test", Facts: n.Facts, Agents: n.Agents}); err != nil {
			t.Fatal(err)
		}
	}
	c := f.client(t, f.operator, reg)
	out, err := c.Do(ctx, Query{Agent: "test", Action: "echo", Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if got := statuses(out); got != "web1=ok web2=ok" || out.Expected != 2 {
		t.Fatalf("got %s (expected %d)", got, out.Expected)
	}
	f.audits["web3"].mu.Lock()
	defer f.audits["web3"].mu.Unlock()
	for _, r := range f.audits["web3"].recs {
		if r.Decision == "accepted" {
			t.Fatalf("web3 ran a request that did not name it: %+v", r)
		}
	}
}
