package audit

import (
	"bytes"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/signetbus/signet/internal/audit/audittest"
	"github.com/signetbus/signet/internal/keys/keytest"
)

// FuzzVerify: Verify reads lines a broker user may have written; no input
// makes it panic, and a finding always has a kind and names a place.
func FuzzVerify(f *testing.F) {
	key := newHostKey(f)
	var buf bytes.Buffer
	l := New(&buf)
	l.Identity, l.Signer, l.CheckpointEvery = "web1", key, 2
	write(f, l, 4, 0)
	f.Add(buf.Bytes())
	// records that keep a signed request: a frame, a certificate, a digest
	op, ca := keytest.Signer(f), keytest.Signer(f)
	f.Add(signedLog(f, key,
		audittest.Record(f, op, "alice", "web1", "r1", "package", "update", map[string]any{"package": "nginx"}),
		audittest.Record(f, userCert(f, op, ca, "alice"), "alice", "web1", "r2", "rpcutil", "ping", nil),
		audittest.Record(f, op, "alice", "web1", "r3", "db", "passwd", map[string]any{"password": "hunter2hunter2"})))
	f.Add([]byte(`{"seq":1,"prev":"","identity":"web1","decision":"checkpoint","checkpoint":{"seq":0,"hash":"","sig":"!!"}}` + "\n"))
	f.Add([]byte(`{"seq":18446744073709551615,"prev":"x","identity":"web1"}` + "\n" + `{"seq":0}`))
	kinds := map[string]bool{FindingEdited: true, FindingDeleted: true, FindingReordered: true, FindingTruncated: true, FindingForged: true, FindingUnknown: true, FindingSignature: true}
	trust := &Signers{Keys: map[string]string{string(op.PublicKey().Marshal()): "alice"}, CAs: map[string]bool{string(ca.PublicKey().Marshal()): true}}
	anyCA := func(string, ssh.PublicKey) bool { return true }
	f.Fuzz(func(t *testing.T, data []byte) {
		rep := Verify(FileLines(data, "f"), VerifyOptions{HostKey: keysOf("web1", key), HostCA: anyCA, Signers: trust, FromStart: true})
		for _, fd := range rep.Findings {
			if !kinds[fd.Kind] || fd.Where == "" {
				t.Fatalf("finding %+v", fd)
			}
		}
	})
}
