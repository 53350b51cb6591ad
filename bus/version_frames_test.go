package bus

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"golang.org/x/crypto/ssh"

	"github.com/signetbus/signet/internal/broker/brokertest"
)

// Frames recorded from each protocol version, in testdata/vN: what a
// client and a signetd of that release put on the wire. The tests replay
// them against this release's responder and client, so a host or a client
// one version apart keeps working (docs/upgrading.md).
//
// Each release records its own: go test ./bus -run TestRecordFrames
// -update-frames writes testdata/vN for N = ProtocolVersion; the
// directories of earlier versions are never rewritten.
var updateFrames = flag.Bool("update-frames", false, "record this protocol version's frames in testdata/vN")

// frameFixture is one recorded frame.
type frameFixture struct {
	Note string `json:"note"`
	// Protocol is the version of the release that recorded it.
	Protocol int `json:"protocol"`
	// Created is the time the frame's request was signed (Unix ms): a
	// responder replaying it runs its clock from there.
	Created int64 `json:"created"`
	// Subject is where the request was published.
	Subject string `json:"subject,omitempty"`
	// Frame is the frame's exact bytes.
	Frame []byte `json:"frame"`
}

// fixedSigner is an ed25519 key derived from a name: the recorded frames
// are signed by keys every release can rebuild. Test keys only.
func fixedSigner(t testing.TB, name string) ssh.Signer {
	t.Helper()
	seed := sha256.Sum256([]byte("signet frame fixtures: " + name))
	s, err := ssh.NewSignerFromKey(ed25519.NewKeyFromSeed(seed[:]))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// frameTime is when the recorded requests were signed. The responder's
// action deadline is a real context deadline (created + ttl), so the
// fixtures are dated far in the future, where it has not passed.
var frameTime = time.Date(2099, 1, 1, 9, 0, 0, 0, time.UTC)

// frameHost is web1 with the fixture host key, answering rpcutil.ping and
// test.echo, on a clock that starts before frameTime and moves to just
// after it once the responder is up.
type frameHost struct {
	nc   *nats.Conn
	r    *Responder
	aud  *memAudit
	now  atomic.Pointer[time.Time]
	keys hostKeys
}

func startFrameHost(t *testing.T) *frameHost {
	t.Helper()
	s := brokertest.Start(t)
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	op, hk := fixedSigner(t, "operator"), fixedSigner(t, "web1")
	trust := trustMap{string(op.PublicKey().Marshal()): {Name: "alice", Roles: []string{"admin"},
		Fingerprint: ssh.FingerprintSHA256(op.PublicKey()), Key: op.PublicKey()}}
	h := &frameHost{nc: nc, aud: &memAudit{}, keys: hostKeys{"web1": hk.PublicKey()}}
	start := frameTime.Add(-time.Minute)
	h.now.Store(&start)
	node := &Node{Identity: "web1", Facts: map[string]string{"zone": "a", "env": "prod"}, Agents: []string{"rpcutil", "test"}}
	h.r, err = NewResponder(ResponderConfig{Conn: nc, Collective: "test", HostKey: hk, Node: func() *Node { return node },
		Trust: trust, Handler: echoHandler{"web1"}, Audit: h.aud, Now: func() time.Time { return *h.now.Load() }})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.r.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.r.Shutdown(context.Background()) })
	later := frameTime.Add(time.Second)
	h.now.Store(&later)
	return h
}

// ask publishes a request frame and returns the reply frame.
func (h *frameHost) ask(t *testing.T, subject string, frame []byte) []byte {
	t.Helper()
	m, err := h.nc.Request(subject, frame, 5*time.Second)
	if err != nil {
		t.Fatalf("request on %s: %v", subject, err)
	}
	return m.Data
}

// recordedRequests are the requests each release records: a direct
// request and a filtered broadcast naming its target.
func recordedRequests(t testing.TB, version int) map[string]*Request {
	op := fixedSigner(t, "operator")
	base := func(id string) *Request {
		return &Request{Version: version, ID: id, Sender: Sender{User: "alice", Key: ssh.FingerprintSHA256(op.PublicKey())},
			Collective: "test", Created: frameTime.UnixMilli(), TTL: 60}
	}
	direct := base(fmt.Sprintf("%032x", 0xd1))
	direct.Agent, direct.Action, direct.Targets = "rpcutil", "ping", []string{"web1"}
	bcast := base(fmt.Sprintf("%032x", 0xb1))
	bcast.Agent, bcast.Action, bcast.Targets = "test", "echo", []string{"web1"}
	bcast.Params = map[string]any{"package": "middleware", "version": "1.4.2", "count": 3}
	bcast.Filter = Filter{Fact: []string{"zone=a"}, Compound: "env=prod and not db"}
	return map[string]*Request{"request": direct, "request_broadcast": bcast}
}

func requestSubject(req *Request) string {
	if req.Agent == "rpcutil" {
		return NodeSubject(req.Collective, "web1")
	}
	return AgentSubject(req.Collective, req.Agent)
}

func writeFixture(t *testing.T, dir, name string, f frameFixture) {
	t.Helper()
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".json"), append(b, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readFixture(t *testing.T, dir, name string) frameFixture {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var f frameFixture
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatalf("%s/%s.json: %v", dir, name, err)
	}
	return f
}

// TestRecordFrames records this release's frames (with -update-frames):
// its requests, its responder's replies to them, and its responder's
// refusal of a request one protocol version newer.
func TestRecordFrames(t *testing.T) {
	if !*updateFrames {
		t.Skip("records frames only with -update-frames")
	}
	dir := filepath.Join("testdata", fmt.Sprintf("v%d", ProtocolVersion))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	h := startFrameHost(t)
	op := fixedSigner(t, "operator")
	for name, req := range recordedRequests(t, ProtocolVersion) {
		frame, err := SignRequest(op, req)
		if err != nil {
			t.Fatal(err)
		}
		subj := requestSubject(req)
		writeFixture(t, dir, name, frameFixture{Note: fmt.Sprintf("a protocol %d client's %s.%s request", ProtocolVersion, req.Agent, req.Action),
			Protocol: ProtocolVersion, Created: req.Created, Subject: subj, Frame: frame})
		reply := h.ask(t, subj, frame)
		writeFixture(t, dir, "reply_to_"+name, frameFixture{Note: fmt.Sprintf("a protocol %d host's reply to %s.json", ProtocolVersion, name),
			Protocol: ProtocolVersion, Created: req.Created, Frame: reply})
	}
	newer := recordedRequests(t, ProtocolVersion+1)["request"]
	newer.ID = fmt.Sprintf("%032x", 0xf1)
	frame, err := SignRequest(op, newer)
	if err != nil {
		t.Fatal(err)
	}
	writeFixture(t, dir, "request_newer", frameFixture{Note: fmt.Sprintf("a protocol %d request, one version newer than the host that refused it", ProtocolVersion+1),
		Protocol: ProtocolVersion, Created: newer.Created, Subject: requestSubject(newer), Frame: frame})
	writeFixture(t, dir, "refusal_of_newer", frameFixture{Note: fmt.Sprintf("a protocol %d host's refusal of request_newer.json", ProtocolVersion),
		Protocol: ProtocolVersion, Created: newer.Created, Frame: h.ask(t, requestSubject(newer), frame)})
}
