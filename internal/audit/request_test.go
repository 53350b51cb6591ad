package audit

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/signetbus/signet/bus"
	"github.com/signetbus/signet/internal/audit/audittest"
	"github.com/signetbus/signet/internal/keys/keytest"
)

// userCert certifies op's key as a user certificate of keyID from ca.
func userCert(t testing.TB, op, ca ssh.Signer, keyID string) ssh.Signer {
	t.Helper()
	c := &ssh.Certificate{Key: op.PublicKey(), CertType: ssh.UserCert, KeyId: keyID, ValidPrincipals: []string{"admin"}, Serial: 7,
		ValidAfter: uint64(time.Now().Add(-time.Hour).Unix()), ValidBefore: uint64(time.Now().Add(time.Hour).Unix())}
	if err := c.SignCert(rand.Reader, ca); err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewCertSigner(c, op)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// signedLog writes, with host key key, the records recs (seq 1, 2, ...) and
// a checkpoint after each two: what a host writes, or what whoever holds
// its key can write.
func signedLog(t testing.TB, key ssh.Signer, recs ...*bus.AuditRecord) []byte {
	t.Helper()
	var buf bytes.Buffer
	l := New(&buf)
	l.Identity, l.Signer, l.CheckpointEvery = "web1", key, 2
	for _, r := range recs {
		if err := l.Audit(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// Every record of an authenticated request keeps what its signature needs
// (the frame, or its signature and digest when a parameter is secret), and
// verify re-checks it. Whoever holds the host key can rewrite the log and
// re-sign its checkpoints, so the chain is intact; what they cannot do is
// sign as an operator: a record whose request was edited, swapped,
// stripped of its signature or re-signed by another key is reported by
// host and seq.
func TestVerifyRechecksRequestSignatures(t *testing.T) {
	key := keytest.Signer(t)
	op, other, ca := keytest.Signer(t), keytest.Signer(t), keytest.Signer(t)
	cert := userCert(t, op, ca, "alice")
	params := map[string]any{"package": "nginx", "version": 1.0}
	honest := func() []*bus.AuditRecord {
		return []*bus.AuditRecord{
			audittest.Record(t, op, "alice", "web1", "r1", "package", "update", params),
			audittest.Record(t, cert, "alice", "web1", "r2", "package", "update", params),
			// a secret parameter: the log keeps the signature and digest only
			audittest.Record(t, op, "alice", "web1", "r3", "db", "passwd", map[string]any{"user": "app", "password": "hunter2hunter2"}),
			audittest.Record(t, op, "alice", "web1", "r4", "package", "status", nil),
		}
	}
	data := signedLog(t, key, honest()...)
	if bytes.Contains(data, []byte("hunter2")) {
		t.Fatalf("the log holds a secret parameter:\n%s", data)
	}
	for i, ln := range FileLines(data, "x") {
		e, _ := ParseLine(ln.Raw)
		if e.Decision == DecisionCheckpoint {
			continue
		}
		if e.Signed == nil || (e.RequestID == "r3") != (len(e.Signed.Frame) == 0) {
			t.Fatalf("line %d: evidence %+v", i+1, e.Signed)
		}
	}
	rep := Verify(FileLines(data, "audit.jsonl"), VerifyOptions{HostKey: keysOf("web1", key), FromStart: true})
	if len(rep.Findings) > 0 || rep.Hosts[0].Requests != 4 {
		t.Fatalf("untouched: findings %v, %d request signatures verified, want 4", rep.Findings, rep.Hosts[0].Requests)
	}

	cases := []struct {
		name   string
		tamper func(recs []*bus.AuditRecord)
		seq    uint64 // the record's seq (checkpoints are 3 and 6)
		want   string
	}{
		{"parameters edited", func(r []*bus.AuditRecord) { r[0].Params = map[string]any{"package": "nginx", "version": 2.0} }, 1, "parameters"},
		{"action edited", func(r []*bus.AuditRecord) { r[3].Action = "remove" }, 5, `action "remove" is not the signed request's "status"`},
		{"operator of a certificate edited", func(r []*bus.AuditRecord) { r[1].Principal = "bob" }, 2, `names operator "bob" but the certificate's key ID is "alice"`},
		{"another request's frame", func(r []*bus.AuditRecord) { r[0].Frame = r[3].Frame }, 1, "request id"},
		{"frame dropped", func(r []*bus.AuditRecord) { r[3].Frame = nil }, 5, "keeps no signed request"},
		{"signature bytes flipped", func(r []*bus.AuditRecord) {
			f := bytes.Clone(r[0].Frame)
			f[len(f)-5] ^= 1
			r[0].Frame = f
		}, 1, "does not verify"},
		{"signed by another key", func(r []*bus.AuditRecord) {
			r[0] = audittest.Record(t, other, "alice", "web1", "r1", "package", "update", params)
			r[0].Key = ssh.FingerprintSHA256(op.PublicKey())
		}, 1, "key"},
		{"secret request re-signed by another key", func(r []*bus.AuditRecord) {
			fake := audittest.Record(t, other, "alice", "web1", "r3", "db", "passwd", map[string]any{"user": "app", "password": "x"})
			r[2].Frame = fake.Frame
		}, 4, "signed by"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			recs := honest()
			c.tamper(recs)
			rep := Verify(FileLines(signedLog(t, key, recs...), "audit.jsonl"), VerifyOptions{HostKey: keysOf("web1", key), FromStart: true})
			if len(rep.Findings) != 1 {
				t.Fatalf("findings %v, want one", rep.Findings)
			}
			f := rep.Findings[0]
			if f.Host != "web1" || f.Seq != c.seq || f.Kind != FindingSignature || !strings.Contains(f.Detail, c.want) {
				t.Fatalf("finding %s, want web1 seq %d: %s: ...%s...", f, c.seq, FindingSignature, c.want)
			}
		})
	}

	// The stored digest of a secret request, edited in place: found too
	// (here the chain breaks as well, since the host key was not used).
	lines := bytes.SplitAfter(data, []byte("\n"))
	var e Entry
	json.Unmarshal(lines[3], &e)
	d := []byte(e.Signed.Digest)
	d[0] ^= 1
	lines[3] = bytes.Replace(lines[3], []byte(e.Signed.Digest), d, 1)
	rep = Verify(FileLines(bytes.Join(lines, nil), "audit.jsonl"), VerifyOptions{HostKey: keysOf("web1", key)})
	found := false
	for _, f := range rep.Findings {
		found = found || fmt.Sprintf("%s %d", f.Kind, f.Seq) == "signature 4"
	}
	if !found {
		t.Fatalf("an edited digest: findings %v", rep.Findings)
	}
}

// Whoever holds a host's key can also make up an operator: a key or a CA
// of their own, and records of requests signed with it. The signature
// verifies; only the hosts' trust file (verify --trust) tells that nobody
// trusts that key or CA, or that the key belongs to another operator.
func TestVerifyChecksSignersAgainstTheTrustFile(t *testing.T) {
	key := keytest.Signer(t)
	op, ca := keytest.Signer(t), keytest.Signer(t)
	madeUp, madeUpCA := keytest.Signer(t), keytest.Signer(t)
	trust := &Signers{Keys: map[string]string{string(op.PublicKey().Marshal()): "alice"}, CAs: map[string]bool{string(ca.PublicKey().Marshal()): true}}
	honest := []*bus.AuditRecord{
		audittest.Record(t, op, "alice", "web1", "r1", "rpcutil", "ping", nil),
		audittest.Record(t, userCert(t, op, ca, "alice"), "alice", "web1", "r2", "rpcutil", "ping", nil),
	}
	rep := Verify(FileLines(signedLog(t, key, honest...), "x"), VerifyOptions{HostKey: keysOf("web1", key), Signers: trust})
	if len(rep.Findings) > 0 || rep.Hosts[0].Requests != 2 {
		t.Fatalf("trusted signers: %v", rep.Findings)
	}
	for _, c := range []struct {
		name string
		rec  *bus.AuditRecord
		want string
	}{
		{"a made-up key", audittest.Record(t, madeUp, "alice", "web1", "r1", "package", "update", nil), "which the trust file does not list"},
		{"a made-up CA", audittest.Record(t, userCert(t, madeUp, madeUpCA, "alice"), "alice", "web1", "r1", "package", "update", nil), "does not list as a cert-authority"},
		{"a trusted key under another name", audittest.Record(t, op, "bob", "web1", "r1", "package", "update", nil), `lists key SHA256:`},
	} {
		t.Run(c.name, func(t *testing.T) {
			data := signedLog(t, key, c.rec)
			if rep := Verify(FileLines(data, "x"), VerifyOptions{HostKey: keysOf("web1", key)}); len(rep.Findings) > 0 {
				t.Fatalf("without the trust file: %v", rep.Findings)
			}
			rep := Verify(FileLines(data, "x"), VerifyOptions{HostKey: keysOf("web1", key), Signers: trust})
			if len(rep.Findings) != 1 || rep.Findings[0].Kind != FindingSignature || rep.Findings[0].Seq != 1 || !strings.Contains(rep.Findings[0].Detail, c.want) {
				t.Fatalf("findings %v, want web1 seq 1 signature ...%s...", rep.Findings, c.want)
			}
		})
	}
}
