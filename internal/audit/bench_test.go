package audit

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/signetbus/signet/bus"
)

// BenchmarkAudit is the cost of one audited request: one record written
// to a real file (two per request that runs: "started" and "accepted").
// signetd's defaults add a signed checkpoint every 1000 records.
func BenchmarkAudit(b *testing.B) {
	l, err := Open(filepath.Join(b.TempDir(), "audit.jsonl"))
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	benchChain(b, l)
	rec := &bus.AuditRecord{Time: time.Unix(1, 0), Identity: "web1", RequestID: "0123456789abcdef0123456789abcdef", Subject: "signet.agent.package",
		Principal: "alice", User: "alice", Key: "SHA256:abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG", Roles: []string{"deployer"},
		Agent: "package", Action: "update", Params: map[string]any{"package": "nginx", "version": "1.24.0"},
		Decision: bus.DecisionAccepted, Status: bus.StatusOK, Changed: true, Summary: "nginx 1.24.0 installed", DurationMS: 1200, Bytes: 400}
	b.ReportAllocs()
	for b.Loop() {
		if err := l.Audit(rec); err != nil {
			b.Fatal(err)
		}
	}
}
