package audit

import (
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/signetbus/signet/bus"
	"github.com/signetbus/signet/internal/audit/audittest"
	"github.com/signetbus/signet/internal/keys/keytest"
)

// A host audits every lock, unlock and revocation it applies from an
// admin-signed control document (agents, DecisionLock...): the record
// names the admin but is no request, so verify does not ask it for a
// signed request (lockdown_ops.txtar found every such record reported as
// "keeps no signed request"). A request record made to look like one (its
// subject changed, its evidence and even its request id dropped) is still
// reported: it names an agent and action.
func TestVerifyAcceptsControlRecords(t *testing.T) {
	key, op := keytest.Signer(t), keytest.Signer(t)
	fp := ssh.FingerprintSHA256(op.PublicKey())
	control := func(decision, reason string) *bus.AuditRecord {
		return &bus.AuditRecord{Identity: "web1", Subject: "control.locks", Principal: "alice", Key: fp, Roles: []string{"admin"},
			Decision: decision, Reason: reason}
	}
	recs := []*bus.AuditRecord{
		audittest.Record(t, op, "alice", "web1", "r1", "package", "status", nil),
		control("lock", "lock L1 on all actions by alice (seq 1): incident 42"),
		control("unlock", "lock L1 on all actions lifted by alice (seq 2)"),
		{Identity: "web1", Subject: "control.revocations", Principal: "alice", Key: fp, Roles: []string{"admin"}, Decision: "revoke", Reason: "key SHA256:x revoked by alice (seq 1): laptop stolen"},
	}
	rep := Verify(FileLines(signedLog(t, key, recs...), "audit.jsonl"), VerifyOptions{HostKey: keysOf("web1", key), FromStart: true})
	if len(rep.Findings) > 0 || rep.Hosts[0].Requests != 1 {
		t.Fatalf("findings %v, %d request signatures verified; want none and 1", rep.Findings, rep.Hosts[0].Requests)
	}

	for _, noID := range []bool{false, true} {
		disguised := audittest.Record(t, op, "alice", "web1", "r2", "package", "update", nil)
		disguised.Subject, disguised.Frame = "control.locks", nil
		if noID {
			disguised.RequestID = ""
		}
		rep = Verify(FileLines(signedLog(t, key, recs[0], disguised), "audit.jsonl"), VerifyOptions{HostKey: keysOf("web1", key), FromStart: true})
		if len(rep.Findings) != 1 || !strings.Contains(rep.Findings[0].Detail, "keeps no signed request") {
			t.Fatalf("a request record dressed as a control record (request id dropped: %v): findings %v", noID, rep.Findings)
		}
	}
}
