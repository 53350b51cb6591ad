package bus

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// TestExactCopyRefusedAsReplayDoesNotWin: a broker user republishes the
// exact signed frame with the victim's inbox; the host refuses the copy
// as a replay (bound to the same request) before the real answer comes.
// A replay refusal is not final: the real answer is the result.
func TestExactCopyRefusedAsReplayDoesNotWin(t *testing.T) {
	f := startFleet(t, 1, slowResult(StatusOK))
	subject := NodeSubject("test", "web1")
	attack(t, f, subject, func(nc *nats.Conn, m *nats.Msg) {
		nc.PublishMsg(&nats.Msg{Subject: subject, Reply: m.Reply, Data: m.Data})
	})
	c := f.client(t, f.operator, nil)
	out, err := c.Do(context.Background(), Query{Agent: "test", Action: "echo", Targets: []string{"web1"}, Timeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if got := statuses(out); got != "web1=ok" || out.Results[0].Reply.Summary != "real" {
		t.Fatalf("got %s, want the real answer", got)
	}
}

// TestConflictingSignedReplies: two different final replies, both signed
// by the host and bound to the request, make the host's result failed,
// whichever came first.
func TestConflictingSignedReplies(t *testing.T) {
	f := startFleet(t, 2, slowResult(StatusOK))
	hk := f.resp["web1"].cfg.HostKey
	attack(t, f, NodeSubject("test", "web1"), func(nc *nats.Conn, m *nats.Msg) {
		req, _, _ := ParseRequest(m.Data)
		for _, st := range []Status{StatusOK, StatusFailed} {
			rep := &Reply{Version: ProtocolVersion, RequestID: req.ID, Identity: "web1", Agent: req.Agent, Action: req.Action,
				Status: st, Time: time.Now().UnixMilli()}
			bindReply(rep, m.Data)
			b, err := SignReply(hk, rep)
			if err != nil {
				t.Error(err)
			}
			nc.Publish(m.Reply, b)
		}
	})
	c := f.client(t, f.operator, nil)
	out, err := c.Do(context.Background(), Query{Agent: "test", Action: "echo", Targets: []string{"web1", "web2"}, Timeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if got := statuses(out); got != "web1=failed web2=ok" {
		t.Fatalf("got %s", got)
	}
	if !strings.Contains(out.Results[0].Error, "conflicting signed replies from web1") {
		t.Fatalf("error %q", out.Results[0].Error)
	}
}

// TestUnexpectedHostIsReported: a host the request did not name answers
// anyway (an old responder that ignores targets, or a compromised one)
// while the named hosts are still working. Its verified reply is reported
// and counts as a failure.
func TestUnexpectedHostIsReported(t *testing.T) {
	f := startFleet(t, 3, slowResult(StatusOK))
	ctx := context.Background()
	reg, err := CreateRegistry(ctx, f.nc, "test", time.Minute, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"web1", "web2"} {
		n := f.resp[id].cfg.Node()
		if err := reg.Put(ctx, f.resp[id].cfg.HostKey, &Registration{Identity: id, Collective: "test", Facts: n.Facts, Agents: n.Agents}); err != nil {
			t.Fatal(err)
		}
	}
	// web3, not in the registry, runs whatever it gets.
	hk := f.resp["web3"].cfg.HostKey
	attack(t, f, AgentSubject("test", "test"), func(nc *nats.Conn, m *nats.Msg) {
		req, _, _ := ParseRequest(m.Data)
		rep := &Reply{Version: ProtocolVersion, RequestID: req.ID, Identity: "web3", Agent: req.Agent, Action: req.Action, Status: StatusOK}
		bindReply(rep, m.Data)
		b, _ := SignReply(hk, rep)
		nc.Publish(m.Reply, b)
	})
	c := f.client(t, f.operator, reg)
	out, err := c.Do(ctx, Query{Agent: "test", Action: "echo", Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(statuses(out), "web3=unexpected") {
		t.Fatalf("got %s: the unexpected host was dropped", statuses(out))
	}
	if ok, failed, _ := out.Counts(); ok != 2 || failed != 1 {
		t.Fatalf("counts ok=%d failed=%d", ok, failed)
	}
}

// TestCancelledBroadcastKeepsPartialResults: cancelling a broadcast to
// registry-known hosts returns what arrived, like a targeted call does.
func TestCancelledBroadcastKeepsPartialResults(t *testing.T) {
	f := startFleet(t, 2, func(c *ResponderConfig) {
		if c.Node().Identity == "web2" {
			c.Handler = HandlerFunc(func(ctx context.Context, call *Call) *Reply {
				time.Sleep(2 * time.Second)
				return &Reply{Status: StatusOK}
			})
		}
	})
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
	c := f.client(t, f.operator, reg)
	for _, q := range []Query{{Agent: "test", Action: "echo"}, {Agent: "test", Action: "echo", Targets: []string{"web1", "web2"}}} {
		cctx, cancel := context.WithCancel(ctx)
		q.Timeout = time.Minute
		q.OnResult = func(r Result) {
			if r.Identity == "web1" {
				cancel()
			}
		}
		out, err := c.Do(cctx, q)
		cancel()
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("targets %v: err = %v", q.Targets, err)
		}
		if out == nil {
			t.Fatalf("targets %v: no outcome: partial results lost", q.Targets)
		}
		if got := statuses(out); got != "web1=ok web2=no response" || !strings.Contains(out.Results[1].Error, "interrupted") {
			t.Fatalf("targets %v: got %s %q", q.Targets, got, out.Results[1].Error)
		}
	}
}

// TestNoResponseNamesTheRealWait: the message for a silent host names how
// long the client really waited, discovery included, not only the
// configured timeout.
func TestNoResponseNamesTheRealWait(t *testing.T) {
	f := startFleet(t, 1)
	c := f.client(t, f.operator, nil)
	out, err := c.Do(context.Background(), Query{Agent: "test", Action: "sleep", Timeout: 300 * time.Millisecond, DiscoveryTimeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if got := statuses(out); got != "web1=no response" {
		t.Fatalf("got %s", got)
	}
	m := regexp.MustCompile(`no response within (\S+) of sending \((\S+) since the query started\)`).FindStringSubmatch(out.Results[0].Error)
	if m == nil {
		t.Fatalf("error %q does not say how long the client waited", out.Results[0].Error)
	}
	sent, _ := time.ParseDuration(m[1])
	total, _ := time.ParseDuration(m[2])
	if sent < 300*time.Millisecond || total < 800*time.Millisecond {
		t.Fatalf("error %q: waits shorter than the timeout and discovery", out.Results[0].Error)
	}
}
