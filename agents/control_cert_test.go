package agents

import (
	"crypto/ed25519"
	"crypto/rand"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/signetbus/signet/bus"
	"github.com/signetbus/signet/bus/control"
)

// TestCertificateRevocableByIDAndSerial: a caller authenticated by a user
// certificate is matched against the revocation list by the certificate's
// key ID and by its serial (with or without the issuing CA), not only by
// the certified key. Before this, subjectOf carried the key fingerprint
// only, so revoking a certificate by serial or key ID did nothing.
func TestCertificateRevocableByIDAndSerial(t *testing.T) {
	newKey := func() ssh.Signer {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		s, err := ssh.NewSignerFromKey(priv)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	ca, user := newKey(), newKey()
	cert := &ssh.Certificate{Key: user.PublicKey(), Serial: 42, CertType: ssh.UserCert, KeyId: "alice",
		ValidPrincipals: []string{"deploy"}, ValidBefore: ssh.CertTimeInfinity}
	if err := cert.SignCert(rand.Reader, ca); err != nil {
		t.Fatal(err)
	}
	p := &bus.Principal{Name: "alice", Roles: []string{"deploy"}, Fingerprint: ssh.FingerprintSHA256(user.PublicKey()), Key: user.PublicKey(), Cert: cert}
	s := subjectOf(p)
	caFP := ssh.FingerprintSHA256(ca.PublicKey())
	serial := uint64(42)
	other := uint64(43)
	for _, c := range []struct {
		name string
		r    control.Revocation
		want bool
	}{
		{"key id", control.Revocation{KeyID: "alice"}, true},
		{"serial", control.Revocation{Serial: &serial}, true},
		{"serial and its CA", control.Revocation{Serial: &serial, CA: caFP}, true},
		{"serial of another CA", control.Revocation{Serial: &serial, CA: "SHA256:someotherca"}, false},
		{"another serial", control.Revocation{Serial: &other}, false},
		{"the certified key", control.Revocation{Key: p.Fingerprint}, true},
		{"another key id", control.Revocation{KeyID: "bob"}, false},
	} {
		d := &control.Document{Revoked: []control.Revocation{c.r}}
		if _, got := d.Match(s); got != c.want {
			t.Errorf("%s: revoked %v, want %v", c.name, got, c.want)
		}
	}
	// A key the trust file lists has no certificate fields to match.
	if s := subjectOf(&bus.Principal{Fingerprint: "SHA256:x"}); s.Cert || s.KeyID != "" {
		t.Errorf("plain key subject %+v", s)
	}
}
