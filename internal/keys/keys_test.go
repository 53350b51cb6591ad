package keys

import (
	"bytes"
	"crypto/rand"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/signetbus/signet/internal/sshsig"
)

func needTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s not installed (Debian package openssh-client): %v", name, err)
	}
	return p
}

func run(t testing.TB, argv ...string) string {
	t.Helper()
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, out)
	}
	return string(out)
}

func mode(t testing.TB, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func TestGenerateInteropWithSSHKeygen(t *testing.T) {
	keygen := needTool(t, "ssh-keygen")
	for _, tc := range []struct {
		name string
		pass []byte
	}{
		{"plain", nil},
		{"encrypted", []byte("correct horse battery staple")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "id_ed25519")
			pub, err := Generate(path, "alice@laptop", tc.pass)
			if err != nil {
				t.Fatal(err)
			}
			if m := mode(t, path); m != 0o600 {
				t.Errorf("private key mode %04o, want 0600", m)
			}
			if m := mode(t, path+".pub"); m != 0o644 {
				t.Errorf("public key mode %04o, want 0644", m)
			}
			// ssh-keygen -l prints the same fingerprint.
			out := run(t, keygen, "-l", "-f", path+".pub")
			if !strings.Contains(out, Fingerprint(pub)) || !strings.Contains(out, "alice@laptop") || !strings.Contains(out, "(ED25519)") {
				t.Errorf("ssh-keygen -l says %q, want fingerprint %s, comment and ED25519", out, Fingerprint(pub))
			}
			// ssh-keygen can read the private key (with the passphrase) and
			// derives the same public key.
			out = run(t, keygen, "-y", "-P", string(tc.pass), "-f", path)
			if got := strings.Fields(out); len(got) < 2 || got[1] != strings.Fields(string(ssh.MarshalAuthorizedKey(pub)))[1] {
				t.Errorf("ssh-keygen -y derived %q", out)
			}
			if tc.pass != nil {
				if out, err := exec.Command(keygen, "-y", "-P", "wrong", "-f", path).CombinedOutput(); err == nil {
					t.Errorf("ssh-keygen read the encrypted key with a wrong passphrase: %s", out)
				}
			}
		})
	}
}

func TestGenerateRefusesOverwrite(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "id")
	if _, err := Generate(path, "", nil); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(path)
	if _, err := Generate(path, "", nil); err == nil || !strings.Contains(err.Error(), "refusing to overwrite") {
		t.Fatalf("second Generate: got %v, want a refusal", err)
	}
	after, _ := os.ReadFile(path)
	if !bytes.Equal(before, after) {
		t.Fatal("existing key was changed")
	}
	// A stray .pub alone also blocks, and no private key is left behind.
	other := filepath.Join(dir, "other")
	os.WriteFile(other+".pub", []byte("x\n"), 0o644)
	if _, err := Generate(other, "", nil); err == nil {
		t.Fatal("Generate overwrote an existing .pub")
	}
	if _, err := os.Stat(other); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("private key left behind: %v", err)
	}
	if _, err := Generate(filepath.Join(dir, "c"), "two\nlines", nil); err == nil {
		t.Fatal("multi-line comment accepted")
	}
}

func TestLoadSigner(t *testing.T) {
	dir := t.TempDir()
	plain := filepath.Join(dir, "plain")
	plainPub, err := Generate(plain, "plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	enc := filepath.Join(dir, "enc")
	encPub, err := Generate(enc, "enc", []byte("s3cret"))
	if err != nil {
		t.Fatal(err)
	}
	asked := 0
	pass := func(p string) func() ([]byte, error) {
		return func() ([]byte, error) { asked++; return []byte(p), nil }
	}

	t.Run("plain key does not ask", func(t *testing.T) {
		asked = 0
		s, err := LoadSigner(plain, pass("unused"))
		if err != nil {
			t.Fatal(err)
		}
		if asked != 0 {
			t.Errorf("passphrase asked %d times for an unencrypted key", asked)
		}
		mustSignAs(t, s, plainPub)
	})
	t.Run("right passphrase", func(t *testing.T) {
		asked = 0
		s, err := LoadSigner(enc, pass("s3cret"))
		if err != nil {
			t.Fatal(err)
		}
		if asked != 1 {
			t.Errorf("passphrase asked %d times, want 1", asked)
		}
		mustSignAs(t, s, encPub)
	})
	t.Run("wrong passphrase", func(t *testing.T) {
		_, err := LoadSigner(enc, pass("guess"))
		if err == nil || !strings.Contains(err.Error(), "wrong passphrase") {
			t.Fatalf("got %v, want a wrong-passphrase error", err)
		}
	})
	t.Run("no passphrase callback", func(t *testing.T) {
		_, err := LoadSigner(enc, nil)
		if !errors.Is(err, ErrPassphraseNeeded) || !strings.Contains(err.Error(), "hint: ") {
			t.Fatalf("got %v, want ErrPassphraseNeeded with a hint", err)
		}
	})
	t.Run("passphrase callback fails", func(t *testing.T) {
		boom := errors.New("no terminal")
		_, err := LoadSigner(enc, func() ([]byte, error) { return nil, boom })
		if !errors.Is(err, boom) {
			t.Fatalf("got %v, want the callback's error", err)
		}
	})
	t.Run("group readable refused", func(t *testing.T) {
		loose := filepath.Join(dir, "loose")
		data, _ := os.ReadFile(plain)
		os.WriteFile(loose, data, 0o640)
		os.Chmod(loose, 0o640)
		_, err := LoadSigner(loose, nil)
		if err == nil || !strings.Contains(err.Error(), "chmod 600") {
			t.Fatalf("got %v, want a refusal with a chmod hint", err)
		}
	})
	t.Run("missing file", func(t *testing.T) {
		_, err := LoadSigner(filepath.Join(dir, "absent"), nil)
		if !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("got %v, want ErrNotExist", err)
		}
	})
	t.Run("not a key", func(t *testing.T) {
		junk := filepath.Join(dir, "junk")
		os.WriteFile(junk, []byte("hello\n"), 0o600)
		if _, err := LoadSigner(junk, nil); err == nil {
			t.Fatal("junk accepted as a key")
		}
	})
	t.Run("rsa key refused", func(t *testing.T) {
		keygen := needTool(t, "ssh-keygen")
		rsaPath := filepath.Join(dir, "id_rsa")
		run(t, keygen, "-q", "-t", "rsa", "-b", "2048", "-N", "", "-f", rsaPath)
		_, err := LoadSigner(rsaPath, nil)
		if !errors.Is(err, ErrKeyType) || !strings.Contains(err.Error(), "ssh-rsa") {
			t.Fatalf("got %v, want ErrKeyType naming ssh-rsa", err)
		}
	})
	t.Run("ssh-keygen encrypted key", func(t *testing.T) {
		keygen := needTool(t, "ssh-keygen")
		p := filepath.Join(dir, "from-keygen")
		run(t, keygen, "-q", "-t", "ed25519", "-N", "keygen-pass", "-f", p)
		if _, err := LoadSigner(p, pass("keygen-pass")); err != nil {
			t.Fatalf("load ssh-keygen's encrypted key: %v", err)
		}
		if _, err := LoadSigner(p, pass("nope")); err == nil {
			t.Fatal("wrong passphrase accepted for ssh-keygen's key")
		}
	})
}

func TestLoadHostKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", "host_key")
	first, err := LoadHostKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if m := mode(t, path); m != 0o600 {
		t.Errorf("host key mode %04o, want 0600", m)
	}
	if m := mode(t, filepath.Dir(path)); m != 0o700 {
		t.Errorf("created directory mode %04o, want 0700", m)
	}
	second, err := LoadHostKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if Fingerprint(first.PublicKey()) != Fingerprint(second.PublicKey()) {
		t.Fatal("LoadHostKey made a new key instead of loading the existing one")
	}
	pubLine, err := os.ReadFile(path + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey(pubLine)
	if err != nil || Fingerprint(pub) != Fingerprint(first.PublicKey()) {
		t.Fatalf(".pub does not hold the host key: %v", err)
	}

	// A corrupt host key is an error, never silently replaced.
	bad := filepath.Join(t.TempDir(), "host_key")
	os.WriteFile(bad, []byte("garbage"), 0o600)
	if _, err := LoadHostKey(bad); err == nil {
		t.Fatal("corrupt host key accepted")
	}
	if data, _ := os.ReadFile(bad); string(data) != "garbage" {
		t.Fatal("corrupt host key was overwritten")
	}
}

func mustSignAs(t testing.TB, s ssh.Signer, want ssh.PublicKey) {
	t.Helper()
	if !bytes.Equal(s.PublicKey().Marshal(), want.Marshal()) {
		t.Fatalf("signer holds %s, want %s", Fingerprint(s.PublicKey()), Fingerprint(want))
	}
	msg := []byte("keys test")
	sig, err := sshsig.Sign(rand.Reader, s, "signet-test", msg)
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	if _, err := sig.Verify("signet-test", msg); err != nil {
		t.Fatalf("verify: %v", err)
	}
}
