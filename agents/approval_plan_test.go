package agents

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/signetbus/signet/bus"
	"github.com/signetbus/signet/internal/keys"
)

// A deploy plan approved once covers every step request of the plan on
// its hosts; a call that is not a step, or a step on a host outside the
// plan, is refused.
func TestPlanApprovedOnceRunsAllSteps(t *testing.T) {
	f := newApFleet(t, "")
	v2 := map[string]any{"package": "shop", "version": "2.0.0"}
	plan := &bus.ApprovalPlan{Workflow: "deploy", App: "shop", Version: "2.0.0", Env: "prod", Batches: [][]string{{"web1"}, {"web2"}},
		Steps: []bus.PlanStep{
			{Name: "update", Agent: "package", Action: "update", Params: v2, Hosts: []string{"web1", "web2"}},
			{Name: "check_version", Agent: "package", Action: "status", Params: map[string]any{"package": "shop"}, Hosts: []string{"web1", "web2"}},
		}}
	sub := &bus.ApprovalSubject{Kind: bus.SubjectPlan, Collective: "t", Requester: ssh.FingerprintSHA256(f.alice.PublicKey()), RequesterName: "alice",
		Reason: "CHG-2 release 2.0.0", Expires: time.Now().Add(time.Hour).UnixMilli(), Plan: plan}
	proof := &bus.ApprovalProof{Subject: *sub, Approvals: []bus.SignedApproval{approve(t, f.carol, "carol", sub, time.Hour)}}
	before := f.runs.Load()
	for _, batch := range plan.Batches {
		res := f.send(t, f.alice, "update", v2, proof, batch...)
		wantStatus(t, res, batch[0], bus.ResultOK)
		res = f.send(t, f.alice, "status", map[string]any{"package": "shop"}, proof, batch...)
		wantStatus(t, res, batch[0], bus.ResultOK)
	}
	if got := f.runs.Load() - before; got != 4 {
		t.Fatalf("%d actions ran, want 4 (two steps on two hosts)", got)
	}
	// Another version is not a step of the plan.
	res := f.send(t, f.alice, "update", updateParams, proof, "web1")
	wantRefused(t, res, "web1", needsNone, "is not a step of the approved deploy of shop 2.0.0")
	// web3 is not in the plan (and dev needs no approval: it runs anyway,
	// so add it to prod by its own plan check through a direct target list
	// that mixes it in).
	res = f.send(t, f.alice, "update", v2, proof, "web1", "web3")
	wantRefused(t, res, "web1", needsNone, "also targets web3")
}

// An approver whose role comes from a user certificate issued with the
// real ssh-keygen counts; one whose certificate does not grant the role,
// or has expired, does not. The certificate's key is the approver's key:
// the same key approving once with and once without its certificate
// counts once.
func TestApprovalByCertificate(t *testing.T) {
	keygen, err := exec.LookPath("ssh-keygen")
	if err != nil {
		t.Skip("ssh-keygen not installed (Debian package openssh-client): ", err)
	}
	dir := t.TempDir()
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(keygen, args...).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	ca := filepath.Join(dir, "ca")
	run("-q", "-t", "ed25519", "-N", "", "-C", "ca", "-f", ca)
	caPub, err := os.ReadFile(ca + ".pub")
	must(t, err)
	issue := func(name, principals, validity string) ssh.Signer {
		t.Helper()
		path := filepath.Join(dir, name)
		if _, err := os.Stat(path); err != nil {
			run("-q", "-t", "ed25519", "-N", "", "-C", name, "-f", path)
		}
		os.Remove(path + keys.CertSuffix)
		run("-q", "-s", ca, "-I", name, "-n", principals, "-V", validity, "-z", "9", path+".pub")
		s, err := keys.LoadSigner(path, nil)
		must(t, err)
		cert, err := keys.LoadCertificate(path + keys.CertSuffix)
		must(t, err)
		cs, err := ssh.NewCertSigner(cert, s)
		must(t, err)
		return cs
	}
	f := newApFleet(t, `cert-authority,roles="approver,deploy",name="corp-ca" `+string(caPub))
	sub := f.subject(f.alice, updateParams, "web1")

	erin := issue("erin", "approver", "-5m:+1h")
	res := f.send(t, f.alice, "update", updateParams, &bus.ApprovalProof{Subject: *sub, Approvals: []bus.SignedApproval{approve(t, erin, "erin", sub, time.Hour)}}, "web1")
	wantStatus(t, res, "web1", bus.ResultOK)

	// A certificate naming only deploy does not make an approver.
	frank := issue("frank", "deploy", "-5m:+1h")
	res = f.send(t, f.alice, "update", updateParams, &bus.ApprovalProof{Subject: *sub, Approvals: []bus.SignedApproval{approve(t, frank, "frank", sub, time.Hour)}}, "web1")
	wantRefused(t, res, "web1", needsNone, "frank", "has roles [deploy], not approver")

	// A certificate that has expired since the approval was signed (an
	// hour ago, while it was valid): refused. The client refuses to sign
	// with it now.
	gina := issue("gina", "approver", "-3h:-1h")
	if _, err := bus.SignApproval(gina, "gina", sub, time.Now(), time.Now().Add(time.Hour)); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("signing with an expired certificate: %v", err)
	}
	sa, err := bus.SignApproval(gina, "gina", sub, time.Now().Add(-90*time.Minute), time.Now().Add(time.Hour))
	must(t, err)
	res = f.send(t, f.alice, "update", updateParams, &bus.ApprovalProof{Subject: *sub, Approvals: []bus.SignedApproval{*sa}}, "web1")
	wantRefused(t, res, "web1", needsNone, "gina", "expired at")

	// erin's key approving again without the certificate is the same key.
	two := strings.Replace(apPolicy, "role: approver\n", "role: approver\n    count: 2\n", 1)
	must(t, os.WriteFile(filepath.Join(f.dir, "policy.yaml"), []byte(two), 0o600))
	f.reload(t)
	plain, err := keys.LoadSigner(filepath.Join(dir, "erin"), nil)
	must(t, err)
	res = f.send(t, f.alice, "update", updateParams, &bus.ApprovalProof{Subject: *sub, Approvals: []bus.SignedApproval{
		approve(t, erin, "erin", sub, time.Hour), approve(t, plain, "erin-plain", sub, time.Hour)}}, "web1")
	wantRefused(t, res, "web1", "needs 2 approvals from role approver, has 1")
}
