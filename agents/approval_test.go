package agents

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"golang.org/x/crypto/ssh"

	"github.com/signetbus/signet/bus"
	"github.com/signetbus/signet/internal/broker/brokertest"
	"github.com/signetbus/signet/internal/wire"
	"github.com/signetbus/signet/plugins"
)

// pkgStub stands in for the package plugin: update counts its runs.
type pkgStub struct{ runs *atomic.Int64 }

func (pkgStub) Describe() plugins.DDL {
	in := []plugins.Input{{Name: "package", Type: plugins.TypeString, Required: true}, {Name: "version", Type: plugins.TypeString, Required: true}}
	return plugins.DDL{Name: "package", Actions: []plugins.Action{{Name: "update", Inputs: in}, {Name: "status", Inputs: in[:1]}}}
}

func (p pkgStub) Run(_ context.Context, r *plugins.Request) (*plugins.Result, error) {
	p.runs.Add(1)
	return &plugins.Result{Changed: r.Action == "update", Summary: r.Action + " " + r.Params.String("package")}, nil
}

// apFleet is three hosts on a real broker (web1 and web2 in env=prod,
// web3 in env=dev) under a policy where a prod package.update needs one
// approval from role approver. alice requests (deploy), carol and dave
// approve (approver), bob is trusted without the approver role, and
// certificates from corp-ca may grant approver.
type apFleet struct {
	dir                     string
	alice, bob, carol, dave ssh.Signer
	hostKeys                keyMap
	audits                  map[string]*memAudit
	nc                      *nats.Conn
	runs                    atomic.Int64
	hosts                   []*Host
	// aliceAlt and carolAlt are second keys of alice and carol, both
	// trusted with role approver.
	aliceAlt, carolAlt ssh.Signer
}

const apPolicy = `rules:
  - roles: [deploy, approver]
    allow: ["package.*", "rpcutil.*"]
approvals:
  - name: prod-updates
    actions: ["package.update"]
    where: ["env=prod"]
    role: approver
`

func newApFleet(t *testing.T, caLine string) *apFleet {
	t.Helper()
	s := brokertest.Start(t)
	f := &apFleet{dir: t.TempDir(), alice: signer(t), bob: signer(t), carol: signer(t), dave: signer(t), hostKeys: keyMap{}, audits: map[string]*memAudit{},
		aliceAlt: signer(t), carolAlt: signer(t)}
	line := func(s ssh.Signer) string { return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(s.PublicKey()))) }
	auth := fmt.Sprintf("roles=\"deploy\",name=\"alice\" %s\nroles=\"deploy\",name=\"bob\" %s\nroles=\"approver\",name=\"carol\" %s\nroles=\"approver,deploy\",name=\"dave\" %s\nroles=\"approver\",name=\"alice\" %s\nroles=\"approver\",name=\"carol\" %s\n%s",
		line(f.alice), line(f.bob), line(f.carol), line(f.dave), line(f.aliceAlt), line(f.carolAlt), caLine)
	must(t, os.WriteFile(filepath.Join(f.dir, "authorized_keys"), []byte(auth), 0o600))
	must(t, os.WriteFile(filepath.Join(f.dir, "policy.yaml"), []byte(apPolicy), 0o600))
	ctx, cancel := context.WithCancel(context.Background())
	var served []chan error
	t.Cleanup(func() {
		cancel()
		for _, c := range served {
			<-c
		}
	})
	for _, id := range []string{"web1", "web2", "web3"} {
		env := "prod"
		if id == "web3" {
			env = "dev"
		}
		h, err := NewHost(HostOptions{Identity: id, Collective: "t", Facts: map[string]string{"env": env},
			Plugins: map[string]plugins.Plugin{"package": pkgStub{&f.runs}}, AuthorizedKeys: filepath.Join(f.dir, "authorized_keys"),
			Policy: filepath.Join(f.dir, "policy.yaml"), ActionTimeout: time.Minute})
		must(t, err)
		hk := signer(t)
		f.hostKeys[id], f.audits[id] = hk.PublicKey(), &memAudit{}
		f.hosts = append(f.hosts, h)
		nc, err := nats.Connect(s.ClientURL())
		must(t, err)
		t.Cleanup(nc.Close)
		cfg := &Config{Identity: id, Collective: "t"}
		cfg.setDefaults()
		ready := make(chan struct{})
		done := make(chan error, 1)
		served = append(served, done)
		go func() {
			done <- Serve(ctx, ServeOptions{Conn: nc, Host: h, HostKey: hk, Audit: f.audits[id], Config: cfg, Ready: func() { close(ready) }})
		}()
		<-ready
	}
	nc, err := nats.Connect(s.ClientURL())
	must(t, err)
	t.Cleanup(nc.Close)
	f.nc = nc
	return f
}

var updateParams = map[string]any{"package": "shop", "version": "1.4.2"}

// subject is alice's request subject for package.update on targets.
func (f *apFleet) subject(requester ssh.Signer, params map[string]any, targets ...string) *bus.ApprovalSubject {
	return &bus.ApprovalSubject{Kind: bus.SubjectRequest, Collective: "t", Requester: ssh.FingerprintSHA256(bus.KeySigner(requester).PublicKey()),
		RequesterName: "alice", Reason: "CHG-1 shop security fix", Expires: time.Now().Add(time.Hour).UnixMilli(),
		Agent: "package", Action: "update", Params: params, Targets: targets}
}

func approve(t *testing.T, s ssh.Signer, name string, sub *bus.ApprovalSubject, validFor time.Duration) bus.SignedApproval {
	t.Helper()
	now := time.Now()
	sa, err := bus.SignApproval(s, name, sub, now.Add(-time.Minute), now.Add(validFor))
	must(t, err)
	return *sa
}

// send sends agent.action with params, signed by s, carrying proof, to
// targets, and returns the results by host.
func (f *apFleet) send(t *testing.T, s ssh.Signer, action string, params map[string]any, proof *bus.ApprovalProof, targets ...string) map[string]bus.Result {
	t.Helper()
	c, err := bus.NewClient(bus.ClientConfig{Conn: f.nc, Collective: "t", Signer: s, User: "alice", HostKeys: f.hostKeys})
	must(t, err)
	out, err := c.Do(context.Background(), bus.Query{Agent: "package", Action: action, Params: params, Targets: targets, Approval: proof, Timeout: 5 * time.Second})
	if err != nil && out == nil {
		t.Fatal(err)
	}
	res := map[string]bus.Result{}
	for _, r := range out.Results {
		res[r.Identity] = r
	}
	return res
}

const needsNone = "needs 1 approval from role approver, has 0"

// wantRefused checks that host refused with the approval code and a
// reason starting with the exact "needs N approval(s) ..., has M" form.
func wantRefused(t *testing.T, res map[string]bus.Result, host, prefix string, contains ...string) {
	t.Helper()
	r := res[host]
	if r.Status != bus.ResultRefused || r.Reply == nil || r.Reply.Code != bus.CodeNeedsApproval {
		t.Fatalf("%s: status %s code %v (%s), want refused %s", host, r.Status, r.Reply, r.Error, bus.CodeNeedsApproval)
	}
	if !strings.HasPrefix(r.Error, prefix) {
		t.Fatalf("%s: %q does not start with %q", host, r.Error, prefix)
	}
	for _, c := range contains {
		if !strings.Contains(r.Error, c) {
			t.Fatalf("%s: %q does not say %q", host, r.Error, c)
		}
	}
}

func TestTwoPersonRule(t *testing.T) {
	f := newApFleet(t, "")
	sub := f.subject(f.alice, updateParams, "web1", "web2", "web3")

	t.Run("unapproved prod update refused, dev and reads run", func(t *testing.T) {
		res := f.send(t, f.alice, "update", updateParams, nil, "web1", "web2", "web3")
		wantRefused(t, res, "web1", needsNone, "the request carries no approval", `policy approvals entry "prod-updates"`)
		wantRefused(t, res, "web2", needsNone)
		wantStatus(t, res, "web3", bus.ResultOK)
		res = f.send(t, f.alice, "status", map[string]any{"package": "shop"}, nil, "web1")
		wantStatus(t, res, "web1", bus.ResultOK)
		// The refusal is audited like every other.
		if !f.audits["web1"].has(func(r *bus.AuditRecord) bool {
			return r.Decision == bus.DecisionRefused && r.Code == bus.CodeNeedsApproval && strings.HasPrefix(r.Reason, needsNone)
		}) {
			t.Error("web1 has no audited needs_approval refusal")
		}
	})
	t.Run("one valid approval passes and is audited", func(t *testing.T) {
		proof := &bus.ApprovalProof{Subject: *sub, Approvals: []bus.SignedApproval{approve(t, f.carol, "carol", sub, time.Hour)}}
		res := f.send(t, f.alice, "update", updateParams, proof, "web1", "web2")
		wantStatus(t, res, "web1", bus.ResultOK)
		wantStatus(t, res, "web2", bus.ResultOK)
		carol := "carol " + ssh.FingerprintSHA256(f.carol.PublicKey())
		if !f.audits["web1"].has(func(r *bus.AuditRecord) bool {
			return r.Decision == bus.DecisionAccepted && r.Action == "update" && len(r.Approvers) == 1 && r.Approvers[0] == carol
		}) {
			t.Error("web1's audit record does not name carol as the approver")
		}
	})
	t.Run("self-approval does not count", func(t *testing.T) {
		dsub := f.subject(f.dave, updateParams, "web1")
		proof := &bus.ApprovalProof{Subject: *dsub, Approvals: []bus.SignedApproval{approve(t, f.dave, "dave", dsub, time.Hour)}}
		res := f.send(t, f.dave, "update", updateParams, proof, "web1")
		wantRefused(t, res, "web1", needsNone, "is the requester's own key")
	})
	t.Run("the same approver twice counts once", func(t *testing.T) {
		// A policy needing two: carol twice is one.
		two := strings.Replace(apPolicy, "role: approver\n", "role: approver\n    count: 2\n", 1)
		must(t, os.WriteFile(filepath.Join(f.dir, "policy.yaml"), []byte(two), 0o600))
		f.reload(t)
		defer func() {
			must(t, os.WriteFile(filepath.Join(f.dir, "policy.yaml"), []byte(apPolicy), 0o600))
			f.reload(t)
		}()
		a1, a2 := approve(t, f.carol, "carol", sub, time.Hour), approve(t, f.carol, "carol-again", sub, 2*time.Hour)
		res := f.send(t, f.alice, "update", updateParams, &bus.ApprovalProof{Subject: *sub, Approvals: []bus.SignedApproval{a1, a2}}, "web1")
		wantRefused(t, res, "web1", "needs 2 approvals from role approver, has 1", "already approved")
		res = f.send(t, f.alice, "update", updateParams, &bus.ApprovalProof{Subject: *sub, Approvals: []bus.SignedApproval{a1, approve(t, f.dave, "dave", sub, time.Hour)}}, "web1")
		wantStatus(t, res, "web1", bus.ResultOK)
	})
	t.Run("a second key of the requester or of an approver", func(t *testing.T) {
		// alice's other key is trusted as alice with role approver: it
		// does not approve alice's request.
		res := f.send(t, f.alice, "update", updateParams, &bus.ApprovalProof{Subject: *sub, Approvals: []bus.SignedApproval{approve(t, f.aliceAlt, "alice", sub, time.Hour)}}, "web1")
		wantRefused(t, res, "web1", needsNone, "is the requester alice's own")
		two := strings.Replace(apPolicy, "role: approver\n", "role: approver\n    count: 2\n", 1)
		must(t, os.WriteFile(filepath.Join(f.dir, "policy.yaml"), []byte(two), 0o600))
		f.reload(t)
		defer func() {
			must(t, os.WriteFile(filepath.Join(f.dir, "policy.yaml"), []byte(apPolicy), 0o600))
			f.reload(t)
		}()
		// carol with two keys is one approver.
		res = f.send(t, f.alice, "update", updateParams, &bus.ApprovalProof{Subject: *sub, Approvals: []bus.SignedApproval{
			approve(t, f.carol, "carol", sub, time.Hour), approve(t, f.carolAlt, "carol", sub, time.Hour)}}, "web1")
		wantRefused(t, res, "web1", "needs 2 approvals from role approver, has 1", "carol already approved with another key")
	})
	t.Run("expired approval refused", func(t *testing.T) {
		now := time.Now()
		sa, err := bus.SignApproval(f.carol, "carol", sub, now.Add(-2*time.Hour), now.Add(-time.Hour))
		must(t, err)
		res := f.send(t, f.alice, "update", updateParams, &bus.ApprovalProof{Subject: *sub, Approvals: []bus.SignedApproval{*sa}}, "web1")
		wantRefused(t, res, "web1", needsNone, "approval expired at")
	})
	t.Run("approver without the role refused", func(t *testing.T) {
		res := f.send(t, f.alice, "update", updateParams, &bus.ApprovalProof{Subject: *sub, Approvals: []bus.SignedApproval{approve(t, f.bob, "bob", sub, time.Hour)}}, "web1")
		wantRefused(t, res, "web1", needsNone, "bob", "has roles [deploy], not approver")
	})
	t.Run("approval for other params or targets refused", func(t *testing.T) {
		proof := &bus.ApprovalProof{Subject: *sub, Approvals: []bus.SignedApproval{approve(t, f.carol, "carol", sub, time.Hour)}}
		other := map[string]any{"package": "shop", "version": "6.6.6"}
		res := f.send(t, f.alice, "update", other, proof, "web1")
		wantRefused(t, res, "web1", needsNone, "parameters differ")
		// A subject edited to the new params no longer matches carol's digest.
		edited := *sub
		edited.Params = other
		res = f.send(t, f.alice, "update", other, &bus.ApprovalProof{Subject: edited, Approvals: proof.Approvals}, "web1")
		wantRefused(t, res, "web1", needsNone, "approval is for another request or plan")
		// Approved for web1 only, sent to web2 as well.
		one := f.subject(f.alice, updateParams, "web1")
		proof = &bus.ApprovalProof{Subject: *one, Approvals: []bus.SignedApproval{approve(t, f.carol, "carol", one, time.Hour)}}
		res = f.send(t, f.alice, "update", updateParams, proof, "web1", "web2")
		wantRefused(t, res, "web1", needsNone, "also targets web2")
		wantRefused(t, res, "web2", needsNone, "not among the approved targets")
		// Approved for alice, replayed into mallory's (bob's) request.
		res = f.send(t, f.bob, "update", updateParams, proof, "web1")
		wantRefused(t, res, "web1", needsNone, "approved for requests signed by")
	})
	t.Run("stripped approvals refused", func(t *testing.T) {
		// A compromised broker or bastion that removes the approvals from
		// a signed request breaks the requester's signature; one that
		// signs a request of its own without them is refused by policy.
		proof := &bus.ApprovalProof{Subject: *sub, Approvals: []bus.SignedApproval{approve(t, f.carol, "carol", sub, time.Hour)}}
		req := &bus.Request{Version: bus.ProtocolVersion, ID: bus.NewID(), Sender: bus.Sender{User: "alice", Key: ssh.FingerprintSHA256(f.alice.PublicKey())},
			Collective: "t", Agent: "package", Action: "update", Params: updateParams, Targets: []string{"web1"},
			Created: time.Now().UnixMilli(), TTL: 30, Approval: proof}
		frame, err := bus.SignRequest(f.alice, req)
		must(t, err)
		env, err := wire.Parse(frame)
		must(t, err)
		req.Approval.Approvals = nil
		env.Payload, err = json.Marshal(req)
		must(t, err)
		msg, err := f.nc.Request(bus.NodeSubject("t", "web1"), env.Marshal(), 5*time.Second)
		must(t, err)
		rep, _, err := bus.ParseReply(msg.Data)
		must(t, err)
		if rep.Status != bus.StatusRefused || rep.Code != bus.CodeBadSignature {
			t.Fatalf("stripped request: %s %s %s, want refused %s", rep.Status, rep.Code, rep.Error, bus.CodeBadSignature)
		}
		if f.runs.Load() == 0 {
			t.Fatal("nothing ran at all")
		}
	})
}

func (f *apFleet) reload(t *testing.T) {
	t.Helper()
	for _, h := range f.hosts {
		must(t, h.Reload())
	}
}
