package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"golang.org/x/crypto/ssh"

	"github.com/signetbus/signet/internal/wire"
)

// frameClient is this release's client, trusting the fixture host key.
func frameClient(t *testing.T, h *frameHost) *Client {
	t.Helper()
	c, err := NewClient(ClientConfig{Conn: h.nc, Collective: "test", Signer: fixedSigner(t, "operator"), User: "alice",
		HostKeys: h.keys, Now: func() time.Time { return frameTime.Add(time.Second) }})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// sentFor is what a client keeps of a request it sent, for checkReply.
func sentFor(t *testing.T, frame []byte) (map[string]*sentRequest, map[string]*sentRequest) {
	t.Helper()
	req, _, err := ParseRequest(frame)
	if err != nil {
		t.Fatal(err)
	}
	s := &sentRequest{req: req, frame: frame, digest: FrameDigest(frame), targets: req.Targets}
	return map[string]*sentRequest{req.ID: s}, map[string]*sentRequest{s.digest: s}
}

// TestFramesOfEarlierVersions replays the frames recorded by every
// release this one still speaks with (testdata/vN, N from
// MinProtocolVersion): their requests run on this release's responder,
// which answers in their version and binds its reply to their frame; this
// release's client accepts their hosts' replies; and their hosts'
// refusal of a newer request reaches this client, naming both versions.
func TestFramesOfEarlierVersions(t *testing.T) {
	for v := MinProtocolVersion; v <= ProtocolVersion; v++ {
		dir := filepath.Join("testdata", fmt.Sprintf("v%d", v))
		if _, err := os.Stat(dir); err != nil {
			if v < ProtocolVersion {
				t.Fatalf("no frames recorded from protocol %d, which this release still speaks: %v", v, err)
			}
			t.Logf("protocol %d (this release) has not recorded its frames yet: go test ./bus -run TestRecordFrames -update-frames", v)
			continue
		}
		t.Run(fmt.Sprintf("v%d", v), func(t *testing.T) {
			h := startFrameHost(t)
			c := frameClient(t, h)
			for _, name := range []string{"request", "request_broadcast"} {
				req := readFixture(t, dir, name)
				parsed, _, err := ParseRequest(req.Frame)
				if err != nil || parsed.Version != v {
					t.Fatalf("%s: version %v, %v", name, parsed, err)
				}
				// This release's host runs the old request.
				frame := h.ask(t, req.Subject, req.Frame)
				rep, _, err := ParseReply(frame)
				if err != nil {
					t.Fatalf("%s: reply: %v", name, err)
				}
				if rep.Status != StatusOK || rep.Version != v || rep.RequestDigest != FrameDigest(req.Frame) {
					t.Errorf("%s: this host's reply %+v, want ok, in protocol %d, bound to the frame", name, rep, v)
				}
				// This release's client accepts the old host's reply,
				// and this host's reply to the old request.
				byID, byDigest := sentFor(t, req.Frame)
				old := readFixture(t, dir, "reply_to_"+name)
				for what, f := range map[string][]byte{"recorded reply": old.Frame, "this host's reply": frame} {
					got := c.checkReply(f, byID, byDigest)
					if got.unbound != nil || got.sent == nil || got.r.Status != ResultOK {
						t.Errorf("%s: %s: %+v (unbound: %v)", name, what, got.r, got.unbound)
					}
				}
			}
			// The old host refused a request one version newer; this
			// client reads why, with both versions named.
			newer := readFixture(t, dir, "request_newer")
			byID, byDigest := sentFor(t, newer.Frame)
			got := c.checkReply(readFixture(t, dir, "refusal_of_newer").Frame, byID, byDigest)
			if got.unbound != nil || got.r.Status != ResultRefused || got.r.Reply.Code != CodeVersion ||
				!strings.Contains(got.r.Error, fmt.Sprint(v+1)) || !strings.Contains(got.r.Error, fmt.Sprint(v)) {
				t.Errorf("refusal of a newer request: %+v (unbound: %v)", got.r, got.unbound)
			}
		})
	}
}

// TestVersionsOutsideTheRangeAreRefused: a request or a reply of a
// version this release does not speak is refused, naming both versions,
// and a newer request with fields this release does not know is still
// read far enough to say so.
func TestVersionsOutsideTheRangeAreRefused(t *testing.T) {
	h := startFrameHost(t)
	op := fixedSigner(t, "operator")
	for _, v := range []int{MinProtocolVersion - 1, ProtocolVersion + 1, ProtocolVersion + 5} {
		req := recordedRequests(t, v)["request"]
		req.ID = fmt.Sprintf("%032x", 0xe0+v)
		frame, err := SignRequest(op, req)
		if err != nil {
			t.Fatal(err)
		}
		if v > ProtocolVersion {
			// A field of the future protocol, inside the signed bytes.
			frame = resignWithField(t, op, req, `"hint":"new in the next protocol"`)
		}
		rep, _, err := ParseReply(h.ask(t, NodeSubject("test", "web1"), frame))
		if err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf("the request speaks protocol %d, this host speaks %s", v, speaks())
		if rep.Status != StatusRefused || rep.Code != CodeVersion || !strings.Contains(rep.Error, want) || rep.Version != ProtocolVersion {
			t.Errorf("protocol %d request: %+v, want a version refusal containing %q", v, rep, want)
		}
	}
	// Replies: signed by the host, but of a version this client does not
	// speak, they are the host's failure, named.
	c := frameClient(t, h)
	hk := fixedSigner(t, "web1")
	for _, v := range []int{MinProtocolVersion - 1, ProtocolVersion + 1} {
		req := recordedRequests(t, ProtocolVersion)["request"]
		frame, _ := SignRequest(op, req)
		byID, byDigest := sentFor(t, frame)
		reply, err := SignReply(hk, &Reply{Version: v, RequestID: req.ID, Identity: "web1", Agent: req.Agent, Action: req.Action,
			Status: StatusOK, RequestDigest: FrameDigest(frame)})
		if err != nil {
			t.Fatal(err)
		}
		got := c.checkReply(reply, byID, byDigest)
		want := fmt.Sprintf("the reply speaks protocol %d, this signet speaks %s", v, speaks())
		if got.r.Status != ResultFailed || !strings.Contains(got.r.Error, want) || !errors.Is(checkReplyVersion(v), ErrProtocol) {
			t.Errorf("protocol %d reply: %+v, want failed with %q", v, got.r, want)
		}
	}
}

// resignWithField signs req with an extra JSON field in its payload, as a
// newer release would.
func resignWithField(t *testing.T, signer ssh.Signer, req *Request, field string) []byte {
	t.Helper()
	body, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	payload := append([]byte(`{`+field+`,`), body[1:]...)
	frame, err := seal(wire.KindRequest, RequestNamespace, signer, json.RawMessage(payload))
	if err != nil {
		t.Fatal(err)
	}
	return frame
}

// TestOlderProtocolClient: a client of the previous release (signing in
// MinProtocolVersion) is served by this release's hosts through the real
// client and responder, and a client cannot be set to a protocol this
// release does not speak.
func TestOlderProtocolClient(t *testing.T) {
	f := startFleet(t, 2)
	c, err := NewClient(ClientConfig{Conn: f.nc, Collective: "test", Signer: f.operator, User: "alice", HostKeys: f.keys, Protocol: MinProtocolVersion})
	if err != nil {
		t.Fatal(err)
	}
	out, err := c.Do(context.Background(), Query{Agent: "rpcutil", Action: "ping", Targets: []string{"web1", "web2"}, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Results) != 2 {
		t.Fatalf("results %+v", out.Results)
	}
	for _, r := range out.Results {
		if r.Status != ResultOK || r.Reply.Version != MinProtocolVersion {
			t.Errorf("%s: %s %q, want ok in protocol %d", r.Identity, r.Status, r.Error, MinProtocolVersion)
		}
	}
	for _, v := range []int{-1, ProtocolVersion + 1} { // 0 is the default, ProtocolVersion
		if _, err := NewClient(ClientConfig{Conn: f.nc, Collective: "test", Signer: f.operator, HostKeys: f.keys, Protocol: v}); !errors.Is(err, ErrProtocol) {
			t.Errorf("Protocol %d: %v, want ErrProtocol", v, err)
		}
	}
}

// startOldHost answers as a signetd of the protocol 1 release did (see
// testdata/v1/refusal_of_newer.json): a request in its protocol runs, any
// other is refused, signed and bound to the frame, with "protocol version
// N, this host speaks 1". The old release's code cannot run here; this
// speaks its protocol byte for byte.
func startOldHost(t *testing.T, f *fleet, id string) {
	t.Helper()
	hk := newSigner(t)
	f.keys[id] = hk.PublicKey()
	const old = 1
	// The fields a protocol 1 host knew; it refused any other as
	// malformed (unknown fields are never ignored).
	v1Fields := []string{"v", "id", "sender", "collective", "agent", "action", "params", "filter", "targets", "created", "ttl"}
	handler := func(m *nats.Msg) {
		req, opened, err := ParseRequest(m.Data)
		if err != nil || (len(req.Targets) > 0 && !slices.Contains(req.Targets, id)) {
			return
		}
		rep := &Reply{Version: old, RequestID: req.ID, Identity: id, Agent: req.Agent, Action: req.Action,
			Time: time.Now().UnixMilli(), RequestDigest: FrameDigest(m.Data)}
		var fields map[string]json.RawMessage
		json.Unmarshal(opened.Envelope.Payload, &fields)
		unknown := ""
		for k := range fields {
			if !slices.Contains(v1Fields, k) {
				unknown = k
			}
		}
		if req.Version != old {
			rep.Status, rep.Code, rep.Error = StatusRefused, CodeVersion, fmt.Sprintf("protocol version %d, this host speaks %d", req.Version, old)
		} else if unknown != "" {
			rep.Status, rep.Code, rep.Error = StatusRefused, CodeMalformed, fmt.Sprintf("malformed request: json: unknown field %q", unknown)
		} else {
			rep.Status, rep.Summary = StatusOK, "pong"
		}
		frame, err := SignReply(hk, rep)
		if err != nil {
			t.Error(err)
			return
		}
		m.Respond(frame)
	}
	for _, subj := range []string{NodeSubject("test", id), AgentSubject("test", "rpcutil")} {
		if _, err := f.nc.Subscribe(subj, handler); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.nc.Flush(); err != nil {
		t.Fatal(err)
	}
}

// TestClientNegotiatesWithOlderHost: a client of this release, with no
// protocol pinned, asks a fleet of one host of this release and one of the
// previous release, directly and by broadcast: the old host refuses the
// new protocol, the client sends it the request again in the old one, and
// both hosts answer ok, each in its own version.
func TestClientNegotiatesWithOlderHost(t *testing.T) {
	if MinProtocolVersion == ProtocolVersion {
		t.Skip("only one protocol version spoken")
	}
	f := startFleet(t, 1)
	startOldHost(t, f, "old1")
	c := f.client(t, f.operator, nil)
	for _, q := range []Query{
		{Agent: "rpcutil", Action: "ping", Targets: []string{"web1", "old1"}, Timeout: 5 * time.Second},
		{Agent: "rpcutil", Action: "ping", Expected: []string{"web1", "old1"}, Timeout: 5 * time.Second},
		// As a workflow step: protocol 1 had no provenance.
		{Agent: "rpcutil", Action: "ping", Targets: []string{"web1", "old1"}, Timeout: 5 * time.Second,
			Provenance: &Provenance{Run: "7f3a09c1", Ticket: "CHG-1"}},
	} {
		var reported []string
		q.OnResult = func(r Result) { reported = append(reported, r.Identity+"="+string(r.Status)) }
		out, err := c.Do(context.Background(), q)
		if err != nil {
			t.Fatal(err)
		}
		if statuses(out) != "old1=ok web1=ok" || len(out.Results) != 2 {
			t.Fatalf("targets %v expected %v: %s %+v", q.Targets, q.Expected, statuses(out), out.Results)
		}
		for _, r := range out.Results {
			want := ProtocolVersion
			if r.Identity == "old1" {
				want = MinProtocolVersion
			}
			if r.Reply.Version != want {
				t.Errorf("%s answered in protocol %d, want %d", r.Identity, r.Reply.Version, want)
			}
		}
		if len(out.RequestIDs) < 2 {
			t.Errorf("request ids %v: the old host was not sent a request of its own", out.RequestIDs)
		}
		if slices.Sort(reported); !slices.Equal(reported, []string{"old1=ok", "web1=ok"}) {
			t.Errorf("OnResult reported %v, want each host once, with its final answer", reported)
		}
	}
	// Pinned to the old protocol, the client needs no second round.
	pinned, err := NewClient(ClientConfig{Conn: f.nc, Collective: "test", Signer: f.operator, User: "alice", HostKeys: f.keys, Protocol: MinProtocolVersion})
	if err != nil {
		t.Fatal(err)
	}
	out, err := pinned.Do(context.Background(), Query{Agent: "rpcutil", Action: "ping", Targets: []string{"web1", "old1"}, Timeout: 5 * time.Second})
	if err != nil || statuses(out) != "old1=ok web1=ok" || len(out.RequestIDs) != 1 {
		t.Fatalf("pinned: %v %s %v", err, statuses(out), out.RequestIDs)
	}
}
