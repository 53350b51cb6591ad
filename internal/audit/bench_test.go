package audit

import (
	"io"
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
	benchAudit(b, l)
}

// BenchmarkAuditCPU is the same without the disk: the CPU the chain adds
// (encoding, hashing, amortized checkpoint signatures).
func BenchmarkAuditCPU(b *testing.B) { benchAudit(b, New(io.Discard)) }

func benchAudit(b *testing.B, l *Log) {
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

// benchChain signs a checkpoint every 1000 records, signetd's default.
func benchChain(b *testing.B, l *Log) {
	l.Identity, l.Signer, l.CheckpointEvery = "web1", newHostKey(b), 1000
}
