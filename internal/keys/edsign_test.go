package keys

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/crypto/ssh"
)

// A key loaded from a file signs through edsign (no 2 ms table on a
// process's first signature) and its signatures are crypto/ed25519's: for
// a key made by the real ssh-keygen, plain and encrypted, and for a
// PKCS #8 key.
func TestLoadedKeySignsAsTheStandardLibrary(t *testing.T) {
	keygen := needTool(t, "ssh-keygen")
	dir := t.TempDir()
	plain, enc, pkcs8 := filepath.Join(dir, "plain"), filepath.Join(dir, "enc"), filepath.Join(dir, "pkcs8")
	run(t, keygen, "-q", "-t", "ed25519", "-N", "", "-f", plain)
	run(t, keygen, "-q", "-t", "ed25519", "-N", "pw", "-f", enc)
	_, k, _ := ed25519.GenerateKey(rand.Reader)
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(pkcs8, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	for _, path := range []string{plain, enc, pkcs8} {
		s, err := LoadSigner(path, func() ([]byte, error) { return []byte("pw"), nil })
		if err != nil {
			t.Fatal(err)
		}
		data, _ := os.ReadFile(path)
		raw, err := ssh.ParseRawPrivateKeyWithPassphrase(data, []byte("pw"))
		if err != nil {
			raw, err = ssh.ParseRawPrivateKey(data)
		}
		if err != nil {
			t.Fatal(err)
		}
		priv, ok := raw.(*ed25519.PrivateKey)
		if !ok {
			p := raw.(ed25519.PrivateKey)
			priv = &p
		}
		msg := []byte("signet request")
		sig, err := s.Sign(rand.Reader, msg)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(sig.Blob, ed25519.Sign(*priv, msg)) || s.PublicKey().Verify(msg, sig) != nil {
			t.Errorf("%s: signature %x is not crypto/ed25519's", filepath.Base(path), sig.Blob)
		}
	}
}
