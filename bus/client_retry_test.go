package bus

import (
	"context"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"golang.org/x/crypto/ssh"

	"github.com/signetbus/signet/internal/broker"
)

// restartableBroker is a real embedded broker that a test can stop and
// start again on the same port.
type restartableBroker struct {
	t    *testing.T
	port int
	srv  *server.Server
}

func startRestartable(t *testing.T) *restartableBroker {
	t.Helper()
	s, err := broker.Start(broker.Config{Port: -1, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(s.ClientURL())
	port, _ := strconv.Atoi(u.Port())
	b := &restartableBroker{t: t, port: port, srv: s}
	t.Cleanup(func() { b.srv.Shutdown(); b.srv.WaitForShutdown() })
	return b
}

func (b *restartableBroker) stop() { b.srv.Shutdown(); b.srv.WaitForShutdown() }

func (b *restartableBroker) start() {
	s, err := broker.Start(broker.Config{Port: b.port, StoreDir: b.t.TempDir()})
	if err != nil {
		b.t.Fatal(err)
	}
	b.srv = s
}

// TestRequestSurvivesBrokerRestart: the broker restarts while a request
// is being sent. The client is back within 50ms, the responder only after
// 1.5s (signetd backs off longer than the CLI), so the first delivery
// reaches no one. The client must notice ("no responders", the
// reconnect) and send the same signed request again, instead of waiting
// out its timeout.
func TestRequestSurvivesBrokerRestart(t *testing.T) {
	b := startRestartable(t)
	url := b.srv.ClientURL()
	operator := newSigner(t)
	op := operator.PublicKey()
	trust := trustMap{string(op.Marshal()): {Name: "alice", Roles: []string{"admin"}, Fingerprint: ssh.FingerprintSHA256(op), Key: op}}
	hk := newSigner(t)
	rnc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(1500*time.Millisecond), nats.ReconnectJitter(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	defer rnc.Close()
	node := &Node{Identity: "web1", Agents: []string{"rpcutil", "test"}}
	aud := &memAudit{}
	r, err := NewResponder(ResponderConfig{Conn: rnc, Collective: "test", HostKey: hk, Node: func() *Node { return node },
		Trust: trust, Handler: echoHandler{"web1"}, Audit: aud})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	defer r.Shutdown(context.Background())
	rnc.Flush()
	cnc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond), nats.ReconnectJitter(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	defer cnc.Close()
	c, err := NewClient(ClientConfig{Conn: cnc, Collective: "test", Signer: operator, User: "alice", HostKeys: hostKeys{"web1": hk.PublicKey()}})
	if err != nil {
		t.Fatal(err)
	}
	// Warm up: the reply subscription exists before the broker goes.
	if out, err := c.Do(context.Background(), Query{Agent: "test", Action: "echo", Targets: []string{"web1"}, Timeout: 5 * time.Second}); err != nil || statuses(out) != "web1=ok" {
		t.Fatalf("before the restart: %v %v", err, out)
	}
	// Once direct, once broadcast to known hosts.
	for _, q := range []Query{{Targets: []string{"web1"}}, {Expected: []string{"web1"}}} {
		b.stop()
		restarted := make(chan struct{})
		go func() {
			defer close(restarted)
			time.Sleep(300 * time.Millisecond)
			b.start()
		}()
		q.Agent, q.Action, q.Timeout = "test", "echo", 15*time.Second
		out, err := c.Do(context.Background(), q)
		<-restarted
		if err != nil {
			t.Fatal(err)
		}
		if got := statuses(out); got != "web1=ok" {
			t.Fatalf("%+v: got %s (%s): the request lost in the restart was not sent again", q, got, out.Results[0].Error)
		}
		t.Logf("answered after %s (timeout 15s)", out.Elapsed)
		// Both connections are back before the next round.
		for !rnc.IsConnected() || !cnc.IsConnected() {
			time.Sleep(50 * time.Millisecond)
		}
	}
}
