package keys

import (
	"crypto/ed25519"
	"crypto/rand"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

func edSigner(t testing.TB) (ssh.Signer, ed25519.PrivateKey) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s, priv
}

// certFor signs a certificate of key with ca, as ssh-keygen -s would.
func certFor(t testing.TB, ca ssh.Signer, key ssh.PublicKey, typ uint32, id string, before uint64, principals ...string) *ssh.Certificate {
	t.Helper()
	c := &ssh.Certificate{Key: key, CertType: typ, KeyId: id, ValidPrincipals: principals, ValidBefore: before}
	if err := c.SignCert(rand.Reader, ca); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestAuthorizedCertAuthority(t *testing.T) {
	ca, _ := edSigner(t)
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(ca.PublicKey())))
	got, err := ParseAuthorizedKeys(strings.NewReader(`cert-authority,roles="deploy,admin",name="corp-ca" ` + line + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || !got[0].CA || got[0].Name != "corp-ca" || strings.Join(got[0].Roles, ",") != "deploy,admin" {
		t.Fatalf("got %+v", got)
	}
	for _, tc := range []struct{ line, want string }{
		{`cert-authority,principals="admin",roles="admin",name="ca" ` + line, "principals= is not used"},
		{`cert-authority,cert-authority,roles="admin",name="ca" ` + line, "cert-authority given twice"},
		{`cert-authority,name="ca" ` + line, `has no roles="..." option`},
		{`cert-authority,roles="admin",name="ca",from="10.0.0.1" ` + line, "signet accepts only cert-authority"},
	} {
		if _, err := ParseAuthorizedKeys(strings.NewReader(tc.line)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want %q", tc.line, err, tc.want)
		}
	}
}

func TestKnownHostsCertAuthority(t *testing.T) {
	ca, _ := edSigner(t)
	other, _ := edSigner(t)
	line := string(ssh.MarshalAuthorizedKey(ca.PublicKey()))
	k, err := ParseKnownHosts(strings.NewReader("@cert-authority web*.prod,db?,!web9.prod " + line))
	if err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]bool{"web1.prod": true, "WEB2.prod": true, "db1": true, "db12": false, "web9.prod": false, "web1.dev": false} {
		if got := k.HostCA(id, ca.PublicKey()); got != want {
			t.Errorf("HostCA(%s) = %v, want %v", id, got, want)
		}
		// Covers decides whether the client sends a host the request at
		// all: a host a CA line names must be sent it.
		if got := k.Covers(id); got != want {
			t.Errorf("Covers(%s) = %v, want %v", id, got, want)
		}
	}
	if k.HostCA("web1.prod", other.PublicKey()) {
		t.Error("another CA is trusted")
	}
	if _, ok := k.Lookup("web1.prod"); ok {
		t.Error("a CA line pins a key")
	}
	for _, tc := range []struct{ text, want string }{
		{"@cert-authority web*\n", "want @cert-authority PATTERNS"},
		{"@cert-authority we/b* " + line, "@cert-authority pattern"},
		{"@revoked web1 " + line, "@revoked is not supported"},
	} {
		if _, err := ParseKnownHosts(strings.NewReader(tc.text)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err %v, want %q", tc.text, err, tc.want)
		}
	}
}

func TestWithCertificate(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "id")
	if _, err := Generate(path, "alice", nil); err != nil {
		t.Fatal(err)
	}
	s, err := LoadSigner(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := WithCertificate(s, path); err != nil || got != s {
		t.Fatalf("no certificate file: %v %v", got, err)
	}
	ca, _ := edSigner(t)
	write := func(c *ssh.Certificate) {
		os.WriteFile(path+CertSuffix, ssh.MarshalAuthorizedKey(c), 0o644)
	}
	write(certFor(t, ca, s.PublicKey(), ssh.UserCert, "alice", ssh.CertTimeInfinity, "admin"))
	got, err := WithCertificate(s, path)
	if err != nil {
		t.Fatal(err)
	}
	if c, ok := got.PublicKey().(*ssh.Certificate); !ok || c.KeyId != "alice" {
		t.Fatalf("signer presents %T", got.PublicKey())
	}
	write(certFor(t, ca, s.PublicKey(), ssh.HostCert, "web1", ssh.CertTimeInfinity, "web1"))
	if _, err := WithCertificate(s, path); err == nil || !strings.Contains(err.Error(), "is a host certificate") {
		t.Fatalf("host certificate: %v", err)
	}
	stranger, _ := edSigner(t)
	write(certFor(t, ca, stranger.PublicKey(), ssh.UserCert, "bob", ssh.CertTimeInfinity, "admin"))
	if _, err := WithCertificate(s, path); err == nil || !strings.Contains(err.Error(), "not the key") {
		t.Fatalf("certificate of another key: %v", err)
	}
	if _, err := LoadHostCertificate(path+CertSuffix, s, "web1"); err == nil || !strings.Contains(err.Error(), "is a user certificate") {
		t.Fatalf("user certificate as host certificate: %v", err)
	}
	write(certFor(t, ca, s.PublicKey(), ssh.HostCert, "web1", ssh.CertTimeInfinity, "web1"))
	if err := CheckHostCertificate(path+CertSuffix, "web2"); err == nil || !strings.Contains(err.Error(), "not this host's identity web2") {
		t.Fatalf("host certificate of another identity: %v", err)
	}
	if _, err := LoadHostCertificate(path+CertSuffix, s, "web1"); err != nil {
		t.Fatal(err)
	}
}

// TestAgentSignerCertificate: a keyring holding a key and its user
// certificates (as ssh-add loads them) yields the key presenting the
// certificate valid the longest; a host certificate is not used.
func TestAgentSignerCertificate(t *testing.T) {
	s, priv := edSigner(t)
	ca, _ := edSigner(t)
	kr := agent.NewKeyring()
	if err := kr.Add(agent.AddedKey{PrivateKey: priv}); err != nil {
		t.Fatal(err)
	}
	soon := uint64(time.Now().Add(time.Hour).Unix())
	later := uint64(time.Now().Add(8 * time.Hour).Unix())
	for _, c := range []*ssh.Certificate{
		certFor(t, ca, s.PublicKey(), ssh.UserCert, "short", soon, "admin"),
		certFor(t, ca, s.PublicKey(), ssh.UserCert, "long", later, "admin"),
		certFor(t, ca, s.PublicKey(), ssh.HostCert, "host", ssh.CertTimeInfinity, "web1"),
	} {
		if err := kr.Add(agent.AddedKey{PrivateKey: priv, Certificate: c}); err != nil {
			t.Fatal(err)
		}
	}
	c1, c2 := net.Pipe()
	defer c1.Close()
	go agent.ServeAgent(kr, c2)
	got, err := AgentSigner(c1, "")
	if err != nil {
		t.Fatal(err)
	}
	c, ok := got.PublicKey().(*ssh.Certificate)
	if !ok || c.KeyId != "long" {
		t.Fatalf("agent signer presents %v", got.PublicKey().Type())
	}
	sig, err := got.Sign(rand.Reader, []byte("x"))
	if err != nil || s.PublicKey().Verify([]byte("x"), sig) != nil {
		t.Fatalf("agent signature with the certified key: %v", err)
	}
}
