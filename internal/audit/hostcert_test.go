package audit

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/signetbus/signet/bus"
	"github.com/signetbus/signet/internal/audit/audittest"
	"github.com/signetbus/signet/internal/keys"
	"github.com/signetbus/signet/internal/keys/keytest"
)

func sshKeygen(t *testing.T, dir string, args ...string) {
	t.Helper()
	path, err := exec.LookPath("ssh-keygen")
	if err != nil {
		t.Skip("ssh-keygen not installed (Debian package openssh-client)")
	}
	cmd := exec.Command(path, args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// A bastion that trusts hosts only through an @cert-authority line (no
// pinned key) verifies a host's checkpoints: each carries the host's
// certificate, issued here by the real ssh-keygen. A certificate from
// another CA, or naming another host, does not make the lines trusted.
func TestVerifyCheckpointsByHostCertificate(t *testing.T) {
	dir := t.TempDir()
	sshKeygen(t, dir, "-q", "-t", "ed25519", "-N", "", "-C", "host-ca", "-f", "host_ca")
	sshKeygen(t, dir, "-q", "-t", "ed25519", "-N", "", "-C", "other-ca", "-f", "other_ca")
	sshKeygen(t, dir, "-q", "-t", "ed25519", "-N", "", "-f", "web1")
	sshKeygen(t, dir, "-q", "-s", "host_ca", "-h", "-I", "web1", "-n", "web1", "-V", "-5m:+1h", "web1.pub")
	sshKeygen(t, dir, "-q", "-t", "ed25519", "-N", "", "-f", "web2")
	sshKeygen(t, dir, "-q", "-s", "host_ca", "-h", "-I", "web2", "-n", "web2", "-V", "-5m:+1h", "web2.pub")
	hostKey, err := keys.LoadHostKey(filepath.Join(dir, "web1"))
	if err != nil {
		t.Fatal(err)
	}
	web2Key, err := keys.LoadHostKey(filepath.Join(dir, "web2"))
	if err != nil {
		t.Fatal(err)
	}
	known := func(caFile string) *keys.KnownHosts {
		pub, err := os.ReadFile(filepath.Join(dir, caFile))
		if err != nil {
			t.Fatal(err)
		}
		k, err := keys.ParseKnownHosts(strings.NewReader("@cert-authority web* " + string(pub)))
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	op := keytest.Signer(t)
	logOf := func(key ssh.Signer, certFile string) []byte {
		c, err := keys.LoadCertificate(filepath.Join(dir, certFile))
		if err != nil {
			t.Fatal(err)
		}
		var recs []*bus.AuditRecord
		for _, id := range []string{"r1", "r2", "r3"} {
			recs = append(recs, audittest.Record(t, op, "alice", "web1", id, "rpcutil", "ping", nil))
		}
		var buf strings.Builder
		l := New(&buf)
		l.Identity, l.Signer, l.CheckpointEvery, l.HostCert = "web1", key, 2, bus.EncodeCert(c)
		for _, r := range recs {
			if err := l.Audit(r); err != nil {
				t.Fatal(err)
			}
		}
		if err := l.Checkpoint(); err != nil {
			t.Fatal(err)
		}
		return []byte(buf.String())
	}

	k := known("host_ca.pub")
	rep := Verify(FileLines(logOf(hostKey, "web1-cert.pub"), "audit.jsonl"), VerifyOptions{HostKey: k.Lookup, HostCA: k.HostCA, FromStart: true})
	if len(rep.Findings) > 0 || rep.Hosts[0].Checkpoints != 2 || rep.Hosts[0].Requests != 3 {
		t.Fatalf("trusted by its CA: findings %v, summary %+v", rep.Findings, rep.Hosts)
	}

	for _, c := range []struct {
		name      string
		known     *keys.KnownHosts
		key       ssh.Signer
		cert      string
		forgedMsg string
	}{
		{"a CA known_hosts does not trust", known("other_ca.pub"), hostKey, "web1-cert.pub", "which known_hosts does not trust for web1"},
		{"a certificate of another host", k, web2Key, "web2-cert.pub", "names web2, not web1"},
		{"a certificate of another key", k, web2Key, "web1-cert.pub", "not the key that signed it"},
	} {
		t.Run(c.name, func(t *testing.T) {
			rep := Verify(FileLines(logOf(c.key, c.cert), "audit.jsonl"), VerifyOptions{HostKey: c.known.Lookup, HostCA: c.known.HostCA, FromStart: true})
			var kinds []string
			for _, f := range rep.Findings {
				kinds = append(kinds, f.Kind)
				if f.Kind == FindingForged && !strings.Contains(f.Detail, c.forgedMsg) {
					t.Errorf("finding %s, want ...%s...", f, c.forgedMsg)
				}
			}
			if got := strings.Join(kinds, ","); got != "forged,forged,unknown" {
				t.Fatalf("findings %v, want each checkpoint forged and the host unknown", rep.Findings)
			}
		})
	}
}
