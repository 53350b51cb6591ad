package keys

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A wrong passphrase is said in the operator's words, names the key, and
// an interactive asker gets three tries.
func TestWrongPassphrase(t *testing.T) {
	dir := t.TempDir()
	enc := filepath.Join(dir, "enc")
	pub, err := Generate(enc, "enc", []byte("s3cret"))
	if err != nil {
		t.Fatal(err)
	}
	answers := func(a ...string) (func() ([]byte, error), *int) {
		n := 0
		return func() ([]byte, error) {
			p := a[min(n, len(a)-1)]
			n++
			return []byte(p), nil
		}, &n
	}

	t.Run("once, wrong", func(t *testing.T) {
		ask, n := answers("guess")
		_, err := LoadSigner(enc, ask)
		if !errors.Is(err, ErrWrongPassphrase) {
			t.Fatalf("got %v, want ErrWrongPassphrase", err)
		}
		if msg := err.Error(); !strings.Contains(msg, "wrong passphrase for "+enc) || strings.Contains(msg, "x509") {
			t.Errorf("message %q: want %q and no x509 wording", msg, "wrong passphrase for "+enc)
		}
		if *n != 1 {
			t.Errorf("asked %d times, want 1 (not a terminal)", *n)
		}
	})
	t.Run("asking: right on the third try", func(t *testing.T) {
		ask, n := answers("a", "b", "s3cret")
		s, err := LoadSignerAsking(enc, ask, nil)
		if err != nil {
			t.Fatal(err)
		}
		if *n != 3 {
			t.Errorf("asked %d times, want 3", *n)
		}
		mustSignAs(t, s, pub)
	})
	t.Run("asking: says so between tries, gives up after three", func(t *testing.T) {
		ask, n := answers("a")
		var said []string
		_, err := LoadSignerAsking(enc, ask, func(msg string) { said = append(said, msg) })
		if !errors.Is(err, ErrWrongPassphrase) {
			t.Fatalf("got %v, want ErrWrongPassphrase", err)
		}
		if *n != MaxPassphraseTries {
			t.Errorf("asked %d times, want %d", *n, MaxPassphraseTries)
		}
		if len(said) != MaxPassphraseTries-1 || !strings.Contains(said[0], "try again") {
			t.Errorf("between tries said %q", said)
		}
	})
}

// A public key given where the private key belongs is named as such, with
// the private key's path, instead of a chmod hint or a parse error.
func TestPublicKeyGivenAsKey(t *testing.T) {
	dir := t.TempDir()
	priv := filepath.Join(dir, "id_ed25519")
	if _, err := Generate(priv, "me", nil); err != nil {
		t.Fatal(err)
	}
	_, err := LoadSigner(priv+".pub", nil)
	if !errors.Is(err, ErrPublicKey) {
		t.Fatalf("got %v, want ErrPublicKey", err)
	}
	msg := err.Error()
	if strings.Contains(msg, "chmod") || !strings.Contains(msg, "is a public key") || !strings.Contains(msg, priv+" ") && !strings.HasSuffix(msg, priv) {
		t.Errorf("message %q: want it to say public key and name %s", msg, priv)
	}

	// The same line in a file without .pub: still a public key, and no
	// private key to name.
	other := filepath.Join(dir, "operator")
	data, _ := os.ReadFile(priv + ".pub")
	if err := os.WriteFile(other, data, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = LoadSigner(other, nil)
	if !errors.Is(err, ErrPublicKey) || strings.Contains(err.Error(), "chmod") {
		t.Fatalf("got %v, want ErrPublicKey without a chmod hint", err)
	}
}
