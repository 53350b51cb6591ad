package bus

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/signetbus/signet/internal/keys/keytest"
)

// The digest an approver signs (over the subject as read back from JSON)
// equals the one a host computes (over the subject inside a request,
// decoded with json.Number), whatever Go types the requester built the
// parameters from.
func TestSubjectDigestSurvivesTheWire(t *testing.T) {
	sub := &ApprovalSubject{Kind: SubjectRequest, Collective: "t", Requester: "SHA256:x", RequesterName: "alice", Reason: "r",
		Expires: 1795945297647, Agent: "health", Action: "http",
		Params:  map[string]any{"retries": int64(3), "ratio": 0.25, "big": 1e21, "url": "http://x/?a=1&b=<2>", "list": []any{int64(1), "a"}},
		Targets: []string{"web1"}}
	want, err := SubjectDigest(sub)
	if err != nil {
		t.Fatal(err)
	}
	req := &Request{Version: ProtocolVersion, ID: NewID(), Collective: "t", Agent: "health", Action: "http", Params: sub.Params,
		Created: 1, TTL: 1, Approval: &ApprovalProof{Subject: *sub}}
	frame, err := SignRequest(keytest.Signer(t), req)
	if err != nil {
		t.Fatal(err)
	}
	got, _, err := ParseRequest(frame)
	if err != nil {
		t.Fatal(err)
	}
	if d, err := SubjectDigest(&got.Approval.Subject); err != nil || d != want {
		t.Fatalf("digest after the wire %s (%v), want %s", d, err, want)
	}
	if !sameParams(got.Params, sub.Params) {
		t.Fatal("request params differ from the subject's after the wire")
	}
	// And any change to what is approved changes the digest.
	for name, edit := range map[string]func(s *ApprovalSubject){
		"params":    func(s *ApprovalSubject) { s.Params = map[string]any{"retries": int64(4)} },
		"targets":   func(s *ApprovalSubject) { s.Targets = []string{"web1", "web2"} },
		"requester": func(s *ApprovalSubject) { s.Requester = "SHA256:y" },
		"reason":    func(s *ApprovalSubject) { s.Reason = "other" },
		"expiry":    func(s *ApprovalSubject) { s.Expires++ },
		"action":    func(s *ApprovalSubject) { s.Action = "tcp" },
	} {
		c := *sub
		edit(&c)
		if d, _ := SubjectDigest(&c); d == want {
			t.Errorf("changing the %s keeps the digest", name)
		}
	}
}

// A broadcast step is judged by each host against the approved filter.
func TestCoversBroadcastByFilter(t *testing.T) {
	s := keytest.Signer(t)
	fp := ssh.FingerprintSHA256(s.PublicKey())
	sub := &ApprovalSubject{Kind: SubjectPlan, Collective: "t", Requester: fp, Reason: "r", Expires: time.Now().Add(time.Hour).UnixMilli(),
		Plan: &ApprovalPlan{Workflow: "deploy", App: "shop", Version: "1", Batches: [][]string{{"web1"}},
			Steps: []PlanStep{{Agent: "haproxy", Action: "drain", Filter: Filter{Agent: []string{"haproxy"}, Fact: []string{"role=lb"}}}}}}
	req := &Request{Collective: "t", Agent: "haproxy", Action: "drain", Targets: []string{"lb1"}, Created: time.Now().UnixMilli()}
	lb := &Node{Identity: "lb1", Agents: []string{"haproxy"}, Facts: map[string]string{"role": "lb"}}
	if err := sub.Covers(req, lb, fp, time.Second); err != nil {
		t.Fatalf("lb1 matching the approved filter: %v", err)
	}
	other := &Node{Identity: "db1", Agents: []string{"haproxy"}, Facts: map[string]string{"role": "db"}}
	if err := sub.Covers(req, other, fp, time.Second); err == nil || !strings.Contains(err.Error(), "does not match the approved filter") {
		t.Fatalf("db1: %v", err)
	}
}

func FuzzOpenApproval(f *testing.F) {
	s := keytest.Signer(f)
	sub := &ApprovalSubject{Kind: SubjectRequest, Collective: "t", Requester: "SHA256:x", Reason: "r", Expires: 2, Agent: "a", Action: "b"}
	sa, err := SignApproval(s, "carol", sub, time.UnixMilli(0), time.UnixMilli(1000))
	if err != nil {
		f.Fatal(err)
	}
	seed, _ := json.Marshal(sa)
	f.Add(seed)
	f.Add([]byte(`{"payload":"","sig":""}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var sa SignedApproval
		if json.Unmarshal(b, &sa) != nil {
			return
		}
		a, _, err := OpenApproval(&sa)
		if err != nil {
			return
		}
		// What verifies is exactly what was signed.
		again, _ := json.Marshal(a)
		var back Approval
		if json.Unmarshal(again, &back) != nil || back != *a {
			t.Fatalf("approval does not round-trip: %+v", a)
		}
		if !bytes.Contains(sa.Payload, []byte(a.Digest)) {
			t.Fatal("digest not from the signed payload")
		}
		_, _ = openPending(b)
	})
}
