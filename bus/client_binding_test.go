package bus

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// slowResult is a handler whose action fails after a pause, so a reply an
// attacker injects reaches the client first.
func slowResult(status Status) func(*ResponderConfig) {
	return func(c *ResponderConfig) {
		c.Handler = HandlerFunc(func(ctx context.Context, call *Call) *Reply {
			time.Sleep(300 * time.Millisecond)
			if status == StatusOK {
				return &Reply{Status: StatusOK, Summary: "real"}
			}
			return &Reply{Status: StatusFailed, Code: CodeFailed, Error: "package update failed"}
		})
	}
}

// attacker is a broker user with no trusted key: it sees every request on a
// host's subject and can publish anything anywhere.
func attack(t *testing.T, f *fleet, subject string, fn func(nc *nats.Conn, m *nats.Msg)) {
	t.Helper()
	nc, err := nats.Connect(f.url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	var once sync.Once
	if _, err := nc.Subscribe(subject, func(m *nats.Msg) { once.Do(func() { fn(nc, m) }) }); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
}

func resultOf(o *Outcome, id string) []Result {
	var rs []Result
	for _, r := range o.Results {
		if r.Identity == id {
			rs = append(rs, r)
		}
	}
	return rs
}

// TestEmptyIDReplyCannotAnswerAnotherRequest: a host-signed "ok" whose
// request id is empty (harvested from a request sent with no id) is
// replayed into the inbox of a request that fails; it must not turn the
// failure into a success.
func TestEmptyIDReplyCannotAnswerAnotherRequest(t *testing.T) {
	f := startFleet(t, 1, slowResult(StatusFailed))
	harvested, err := SignReply(f.resp["web1"].cfg.HostKey, &Reply{Version: ProtocolVersion, Identity: "web1", Status: StatusOK, Summary: "updated", Time: time.Now().UnixMilli()})
	if err != nil {
		t.Fatal(err)
	}
	attack(t, f, NodeSubject("test", "web1"), func(nc *nats.Conn, m *nats.Msg) {
		nc.Publish(m.Reply, harvested)
	})
	c := f.client(t, f.operator, nil)
	out, err := c.Do(context.Background(), Query{Agent: "test", Action: "echo", Targets: []string{"web1"}, Timeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	rs := resultOf(out, "web1")
	if len(rs) != 1 || rs[0].Status != ResultFailed {
		t.Fatalf("web1: %s (%+v), want exactly one failed result", statuses(out), rs)
	}
	if ok, _, _ := out.Counts(); ok != 0 {
		t.Fatalf("a replayed reply counted as ok: %s", statuses(out))
	}
}

// TestResponderRefusesMalformedIDs: a request whose id is empty or not 32
// lowercase hex digits is refused, so no host ever signs a reply that
// could answer any request.
func TestResponderRefusesMalformedIDs(t *testing.T) {
	f := startFleet(t, 1)
	for _, id := range []string{"", "x", strings.Repeat("A", 32), strings.Repeat("0", 31), strings.Repeat("0", 33)} {
		r := baseRequest(f, f.operator)
		r.ID = id
		frame, err := SignRequest(f.operator, r)
		if err != nil {
			t.Fatal(err)
		}
		rs := rawSend(t, f, NodeSubject("test", "web1"), frame)
		if len(rs) != 1 || rs[0].Status != ResultRefused || rs[0].Reply.Code != CodeMalformed {
			t.Fatalf("id %q: %+v, want refused %s", id, rs, CodeMalformed)
		}
	}
	if rec := f.audits["web1"].find(CodeMalformed); rec == nil || rec.Decision != "refused" {
		t.Fatal("malformed id not audited as refused")
	}
}

// TestHarvestedReplyIsNotAnAnswer: the attacker captures a signed "ok"
// reply of one request and republishes it into another request's inbox.
// It is a warning, never a result, and the real answer stands.
func TestHarvestedReplyIsNotAnAnswer(t *testing.T) {
	f := startFleet(t, 1, slowResult(StatusFailed))
	// A signed "ok" the host gave to another request (as harvested from
	// an inbox by a broker user).
	first, err := SignReply(f.resp["web1"].cfg.HostKey, &Reply{Version: ProtocolVersion, RequestID: NewID(), Identity: "web1", Agent: "test", Action: "echo", Status: StatusOK, Time: time.Now().UnixMilli()})
	if err != nil {
		t.Fatal(err)
	}
	attack(t, f, NodeSubject("test", "web1"), func(nc *nats.Conn, m *nats.Msg) { nc.Publish(m.Reply, first) })
	c := f.client(t, f.operator, nil)
	out, err := c.Do(context.Background(), Query{Agent: "test", Action: "echo", Targets: []string{"web1"}, Timeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if got := statuses(out); got != "web1=failed" {
		t.Fatalf("got %s, want only the real failure", got)
	}
	if len(out.Warnings) != 1 || !strings.Contains(out.Warnings[0], "does not answer this request was received from web1") {
		t.Fatalf("warnings %q", out.Warnings)
	}
}

// TestRefusalOfGarbledCopyDoesNotWin: a broker user with no key republishes
// the victim's request with a broken signature and the victim's inbox as
// reply subject. The host's signed refusal of the copy arrives first; the
// real answer must still be the result.
func TestRefusalOfGarbledCopyDoesNotWin(t *testing.T) {
	f := startFleet(t, 1, slowResult(StatusOK))
	subject := NodeSubject("test", "web1")
	attack(t, f, subject, func(nc *nats.Conn, m *nats.Msg) {
		bad := append([]byte(nil), m.Data...)
		bad[len(bad)-1] ^= 0xff // the last byte of the ed25519 signature
		nc.PublishMsg(&nats.Msg{Subject: subject, Reply: m.Reply, Data: bad})
		// And unsigned: the payload with an empty signature.
		nc.PublishMsg(&nats.Msg{Subject: subject, Reply: m.Reply, Data: m.Data[:len(m.Data)/2]})
	})
	c := f.client(t, f.operator, nil)
	out, err := c.Do(context.Background(), Query{Agent: "test", Action: "echo", Targets: []string{"web1"}, Timeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if got := statuses(out); got != "web1=ok" {
		t.Fatalf("got %s (%+v), want the real answer", got, out.Results)
	}
	if out.Results[0].Reply.Summary != "real" {
		t.Fatalf("reply %+v", out.Results[0].Reply)
	}
	if len(out.Warnings) == 0 || !strings.Contains(out.Warnings[0], "possible tampering") {
		t.Fatalf("warnings %q", out.Warnings)
	}
}

func TestCheckBinding(t *testing.T) {
	req := &Request{ID: NewID(), Agent: "package", Action: "update"}
	s := &sentRequest{req: req, digest: FrameDigest([]byte("frame"))}
	good := Reply{RequestID: req.ID, Agent: "package", Action: "update", RequestDigest: s.digest, Status: StatusOK}
	cases := []struct {
		name string
		edit func(*Reply)
		ok   bool
	}{
		{"bound", func(*Reply) {}, true},
		{"empty id", func(r *Reply) { r.RequestID = "" }, false},
		{"empty id, digest only, ok", func(r *Reply) { r.RequestID, r.Agent, r.Action = "", "", "" }, false},
		{"digest only refusal of unparsed bytes", func(r *Reply) { r.RequestID, r.Agent, r.Action, r.Status = "", "", "", StatusRefused }, true},
		{"digest only refusal of other bytes", func(r *Reply) {
			r.RequestID, r.Agent, r.Action, r.Status, r.RequestDigest = "", "", "", StatusRefused, FrameDigest([]byte("other"))
		}, false},
		{"uppercase id", func(r *Reply) { r.RequestID = strings.ToUpper(r.RequestID) }, false},
		{"other id", func(r *Reply) { r.RequestID = NewID() }, false},
		{"no digest", func(r *Reply) { r.RequestDigest = "" }, false},
		{"other digest", func(r *Reply) { r.RequestDigest = FrameDigest([]byte("copy")) }, false},
		{"other agent", func(r *Reply) { r.Agent = "service" }, false},
		{"other action", func(r *Reply) { r.Action = "remove" }, false},
	}
	for _, c := range cases {
		rep := good
		c.edit(&rep)
		if err := checkBinding(&rep, s); (err == nil) != c.ok {
			t.Errorf("%s: err = %v, want ok=%v", c.name, err, c.ok)
		}
	}
}
