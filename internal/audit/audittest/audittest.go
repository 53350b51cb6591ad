// Package audittest makes audit records of real signed requests for the
// tests of the audit log, its shipping and `signet audit`: a record of an
// authenticated request keeps its signed frame, and `signet audit verify`
// re-verifies it, so a test record without one would be a finding.
package audittest

import (
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/signetbus/signet/bus"
)

// Record signs a request for agent.action with params as operator
// (a plain key or a certificate signer, ssh.NewCertSigner) and returns
// host's "accepted" record of it, as the responder fills it in: the
// request's fields, the principal (the certificate's key ID, or name for a
// plain key) and the frame.
func Record(tb testing.TB, operator ssh.Signer, name, host, id, agent, action string, params map[string]any) *bus.AuditRecord {
	tb.Helper()
	return RunRecord(tb, operator, name, host, id, "", agent, action, params)
}

// RunRecord is Record for a request that workflow run sent.
func RunRecord(tb testing.TB, operator ssh.Signer, name, host, id, run, agent, action string, params map[string]any) *bus.AuditRecord {
	tb.Helper()
	now := time.Now()
	var prov *bus.Provenance
	if run != "" {
		prov = &bus.Provenance{Run: run}
	}
	req := &bus.Request{Version: bus.ProtocolVersion, ID: id, Sender: bus.Sender{User: name, Key: ssh.FingerprintSHA256(operator.PublicKey())},
		Collective: "signet", Agent: agent, Action: action, Params: params, Created: now.UnixMilli(), TTL: 60, Provenance: prov}
	frame, err := bus.SignRequest(operator, req)
	if err != nil {
		tb.Fatal(err)
	}
	principal := name
	if c, ok := operator.PublicKey().(*ssh.Certificate); ok {
		principal = c.KeyId
	}
	return &bus.AuditRecord{Time: now.UTC(), Identity: host, RequestID: id, Subject: "signet.node." + host,
		Principal: principal, User: name, Key: req.Sender.Key, Agent: agent, Action: action, Params: params, Provenance: prov,
		Decision: bus.DecisionAccepted, Status: bus.StatusOK, Frame: frame}
}
