package sshsig

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/signetbus/signet/internal/keys/keytest"
)

const testNamespace = "signet-test"

var newSigner = keytest.Signer

func TestSignVerifyRoundTrip(t *testing.T) {
	signer := newSigner(t)
	msg := []byte("package.update nginx=1.24")
	sig, err := Sign(rand.Reader, signer, testNamespace, msg)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := Parse(sig.Marshal())
	if err != nil {
		t.Fatalf("parse our own signature: %v", err)
	}
	pub, err := parsed.Verify(testNamespace, msg)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if !bytes.Equal(pub.Marshal(), signer.PublicKey().Marshal()) {
		t.Fatalf("verify returned key %s, want the signer's", ssh.FingerprintSHA256(pub))
	}
	if parsed.HashAlg != HashSHA512 {
		t.Errorf("hash algorithm %q, want %q", parsed.HashAlg, HashSHA512)
	}
	if err := parsed.VerifyWith(signer.PublicKey(), msg); err != nil {
		t.Errorf("VerifyWith: %v", err)
	}
}

func TestVerifyRejects(t *testing.T) {
	signer := newSigner(t)
	other := newSigner(t)
	msg := []byte("service.restart nginx")
	sig, err := Sign(rand.Reader, signer, testNamespace, msg)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("wrong namespace", func(t *testing.T) {
		_, err := sig.Verify("signet-reply", msg)
		if !errors.Is(err, ErrNamespace) {
			t.Fatalf("got %v, want ErrNamespace", err)
		}
	})
	t.Run("namespace rewritten in the blob", func(t *testing.T) {
		// An attacker who edits the namespace field must not get a
		// signature that verifies under the new namespace: the namespace
		// is part of the signed data.
		forged := *sig
		forged.Namespace = "signet-reply"
		_, err := forged.Verify("signet-reply", msg)
		if !errors.Is(err, ErrBadSig) {
			t.Fatalf("got %v, want ErrBadSig", err)
		}
	})
	t.Run("tampered message", func(t *testing.T) {
		_, err := sig.Verify(testNamespace, []byte("service.restart nginy"))
		if !errors.Is(err, ErrBadSig) {
			t.Fatalf("got %v, want ErrBadSig", err)
		}
	})
	t.Run("hash algorithm swapped", func(t *testing.T) {
		forged := *sig
		forged.HashAlg = HashSHA256
		_, err := forged.Verify(testNamespace, msg)
		if !errors.Is(err, ErrBadSig) {
			t.Fatalf("got %v, want ErrBadSig", err)
		}
	})
	t.Run("unknown hash algorithm", func(t *testing.T) {
		forged := *sig
		forged.HashAlg = "md5"
		_, err := forged.Verify(testNamespace, msg)
		if !errors.Is(err, ErrHash) {
			t.Fatalf("got %v, want ErrHash", err)
		}
	})
	t.Run("another key claimed", func(t *testing.T) {
		forged := *sig
		forged.PublicKey = other.PublicKey().Marshal()
		_, err := forged.Verify(testNamespace, msg)
		if !errors.Is(err, ErrBadSig) {
			t.Fatalf("got %v, want ErrBadSig", err)
		}
		if err := sig.VerifyWith(other.PublicKey(), msg); !errors.Is(err, ErrBadSig) {
			t.Fatalf("VerifyWith another key: got %v, want ErrBadSig", err)
		}
	})
	t.Run("flipped signature bit", func(t *testing.T) {
		blob := sig.Marshal()
		blob[len(blob)-1] ^= 1
		parsed, err := Parse(blob)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := parsed.Verify(testNamespace, msg); !errors.Is(err, ErrBadSig) {
			t.Fatalf("got %v, want ErrBadSig", err)
		}
	})
}

func TestSignRefusesNonEd25519(t *testing.T) {
	for _, name := range []string{"rsa", "ecdsa"} {
		t.Run(name, func(t *testing.T) {
			// Keys made by ssh-keygen for the fixtures are not kept; make
			// equivalent ones in-process.
			signer := fixtureSigner(t, name)
			_, err := Sign(rand.Reader, signer, testNamespace, []byte("x"))
			if !errors.Is(err, ErrKeyType) {
				t.Fatalf("got %v, want ErrKeyType", err)
			}
		})
	}
	if _, err := Sign(rand.Reader, newSigner(t), "", []byte("x")); err == nil {
		t.Fatal("empty namespace accepted")
	}
}

// TestVerifyRefusesNonEd25519 feeds real RSA and ECDSA signatures made by
// ssh-keygen: they are well-formed and would verify, but signet only trusts
// ed25519 keys.
func TestVerifyRefusesNonEd25519(t *testing.T) {
	msg := readFile(t, "testdata/message.txt")
	for _, file := range []string{"testdata/rsa.sig", "testdata/ecdsa.sig"} {
		t.Run(file, func(t *testing.T) {
			sig := parseArmored(t, file)
			_, err := sig.Verify(testNamespace, msg)
			if !errors.Is(err, ErrKeyType) {
				t.Fatalf("got %v, want ErrKeyType", err)
			}
		})
	}
}

// TestVerifySSHKeygenFixtures checks the committed signatures that
// `ssh-keygen -Y sign` made, with both hash algorithms it offers.
func TestVerifySSHKeygenFixtures(t *testing.T) {
	msg := readFile(t, "testdata/message.txt")
	want := parsePub(t, "testdata/ed25519.pub")
	for _, tc := range []struct{ file, hash string }{
		{"testdata/ed25519-sha512.sig", HashSHA512},
		{"testdata/ed25519-sha256.sig", HashSHA256},
	} {
		t.Run(tc.file, func(t *testing.T) {
			sig := parseArmored(t, tc.file)
			if sig.HashAlg != tc.hash {
				t.Fatalf("hash %q, want %q", sig.HashAlg, tc.hash)
			}
			pub, err := sig.Verify(testNamespace, msg)
			if err != nil {
				t.Fatalf("verify: %v", err)
			}
			if !bytes.Equal(pub.Marshal(), want.Marshal()) {
				t.Fatal("verified under an unexpected key")
			}
			// Armor must reproduce ssh-keygen's text byte for byte.
			if got := Armor(sig.Marshal()); !bytes.Equal(got, readFile(t, tc.file)) {
				t.Errorf("Armor differs from ssh-keygen's output:\n%s", got)
			}
		})
	}
}

func TestParseRejects(t *testing.T) {
	good := parseArmored(t, "testdata/ed25519-sha512.sig").Marshal()
	// A blob whose reserved field holds "x", built by hand since Marshal
	// always writes it empty.
	var b bytes.Buffer
	b.WriteString(magic)
	binary.Write(&b, binary.BigEndian, uint32(version))
	writeString(&b, []byte("k"))
	writeString(&b, []byte("n"))
	writeString(&b, []byte("x"))
	writeString(&b, []byte("sha512"))
	writeString(&b, []byte("s"))
	badVersion := append([]byte(nil), good...)
	badVersion[9] = 2

	cases := []struct {
		name, blob, wantMsg string
	}{
		{"empty", "", "preamble"},
		{"wrong magic", "SSHSIX" + string(good[6:]), "preamble"},
		{"version 2", string(badVersion), "version 2"},
		{"truncated", string(good[:len(good)-5]), "overruns"},
		{"truncated length", string(good[:12]), "truncated length"},
		{"trailing byte", string(good) + "\x00", "trailing"},
		{"reserved not empty", b.String(), "reserved"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.blob))
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("got %v, want a *ParseError", err)
			}
			if !strings.Contains(err.Error(), tc.wantMsg) {
				t.Fatalf("error %q does not mention %q", err, tc.wantMsg)
			}
		})
	}
}

func TestUnarmorRejects(t *testing.T) {
	for _, in := range []string{
		"",
		"U1NIU0lH",
		"-----BEGIN SSH SIGNATURE-----\nnot base64!\n-----END SSH SIGNATURE-----\n",
		"-----BEGIN SSH SIGNATURE-----\nU1NIU0lH\n",
	} {
		if _, err := Unarmor([]byte(in)); err == nil {
			t.Errorf("Unarmor(%q) accepted", in)
		}
	}
}

// skSigner signs as a FIDO sk-ssh-ed25519@openssh.com key would: the
// authenticator signs sha256(application) || flags || counter ||
// sha256(data), and the signature carries flags and counter after the blob.
// There is no hardware here, so the "authenticator" is a software key; the
// bytes on the wire are the same.
type skSigner struct {
	priv ed25519.PrivateKey
	pub  ssh.PublicKey
}

const skApplication = "ssh:"

func newSKSigner(t testing.TB) *skSigner {
	t.Helper()
	edPub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	wire := ssh.Marshal(struct {
		Type, Key, Application string
	}{ssh.KeyAlgoSKED25519, string(edPub), skApplication})
	pub, err := ssh.ParsePublicKey(wire)
	if err != nil {
		t.Fatalf("build sk public key: %v", err)
	}
	return &skSigner{priv: priv, pub: pub}
}

func (s *skSigner) PublicKey() ssh.PublicKey { return s.pub }

func (s *skSigner) Sign(_ io.Reader, data []byte) (*ssh.Signature, error) {
	const flagUserPresence = 0x01
	counter := uint32(7)
	app := sha256.Sum256([]byte(skApplication))
	dh := sha256.Sum256(data)
	var signed bytes.Buffer
	signed.Write(app[:])
	signed.WriteByte(flagUserPresence)
	binary.Write(&signed, binary.BigEndian, counter)
	signed.Write(dh[:])
	rest := []byte{flagUserPresence, 0, 0, 0, byte(counter)}
	return &ssh.Signature{
		Format: ssh.KeyAlgoSKED25519,
		Blob:   ed25519.Sign(s.priv, signed.Bytes()),
		Rest:   rest,
	}, nil
}

func TestSKEd25519Accepted(t *testing.T) {
	signer := newSKSigner(t)
	msg := []byte("haproxy.drain web1")
	sig, err := Sign(rand.Reader, signer, testNamespace, msg)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := Parse(sig.Marshal())
	if err != nil {
		t.Fatal(err)
	}
	pub, err := parsed.Verify(testNamespace, msg)
	if err != nil {
		t.Fatalf("verify sk signature: %v", err)
	}
	if pub.Type() != ssh.KeyAlgoSKED25519 {
		t.Fatalf("key type %s", pub.Type())
	}
	if _, err := parsed.Verify(testNamespace, []byte("haproxy.drain web2")); !errors.Is(err, ErrBadSig) {
		t.Fatalf("tampered sk message: got %v, want ErrBadSig", err)
	}
	// And stock OpenSSH agrees that this is a valid sk signature.
	verifyWithSSHKeygen(t, pub, sig, msg)
}

// TestOpenSSHVerifiesOurSignature signs with Sign and checks the result
// with the real `ssh-keygen -Y verify`.
func TestOpenSSHVerifiesOurSignature(t *testing.T) {
	signer := newSigner(t)
	msg := []byte("rpcutil.ping from signet\n")
	sig, err := Sign(rand.Reader, signer, testNamespace, msg)
	if err != nil {
		t.Fatal(err)
	}
	verifyWithSSHKeygen(t, signer.PublicKey(), sig, msg)

	// Negative control: ssh-keygen must refuse the same signature for
	// another message, or the positive result above proves nothing.
	if out, err := runSSHKeygenVerify(t, signer.PublicKey(), sig, []byte("tampered")); err == nil {
		t.Fatalf("ssh-keygen accepted a signature over another message:\n%s", out)
	}
}

// TestWeVerifySSHKeygenSignature makes a fresh key and signature with the
// real `ssh-keygen -Y sign` and checks it with Unarmor, Parse and Verify.
func TestWeVerifySSHKeygenSignature(t *testing.T) {
	keygen := needSSHKeygen(t)
	dir := t.TempDir()
	key := filepath.Join(dir, "id_ed25519")
	run(t, keygen, "-q", "-t", "ed25519", "-N", "", "-C", "interop", "-f", key)
	msg := []byte("package.install nginx\nwith a second line\n")
	msgFile := filepath.Join(dir, "msg")
	if err := os.WriteFile(msgFile, msg, 0o600); err != nil {
		t.Fatal(err)
	}
	// ssh-keygen -Y sign FILE writes FILE.sig.
	run(t, keygen, "-Y", "sign", "-q", "-f", key, "-n", testNamespace, msgFile)
	sig := parseArmored(t, msgFile+".sig")
	pub, err := sig.Verify(testNamespace, msg)
	if err != nil {
		t.Fatalf("verify ssh-keygen signature: %v", err)
	}
	if want := parsePub(t, key+".pub"); !bytes.Equal(pub.Marshal(), want.Marshal()) {
		t.Fatal("verified under a key other than the one ssh-keygen signed with")
	}
	if _, err := sig.Verify("other-namespace", msg); !errors.Is(err, ErrNamespace) {
		t.Fatalf("other namespace: got %v, want ErrNamespace", err)
	}
}

// FuzzParse requires that every blob Parse accepts marshals back to the
// very same bytes: there is one encoding of a signature, so a signature
// cannot be altered without breaking it (age's FuzzMalleability).
func FuzzParse(f *testing.F) {
	files, err := filepath.Glob("testdata/*.sig")
	if err != nil || len(files) == 0 {
		f.Fatalf("no seed signatures in testdata: %v", err)
	}
	for _, file := range files {
		text, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		blob, err := Unarmor(text)
		if err != nil {
			f.Fatalf("%s: %v", file, err)
		}
		f.Add(blob)
	}
	f.Fuzz(func(t *testing.T, blob []byte) {
		sig, err := Parse(blob)
		if err != nil {
			return
		}
		if got := sig.Marshal(); !bytes.Equal(got, blob) {
			t.Fatalf("Parse then Marshal changed the bytes:\n in  %x\n out %x", blob, got)
		}
		again, err := Unarmor(Armor(blob))
		if err != nil || !bytes.Equal(again, blob) {
			t.Fatalf("Armor/Unarmor round trip failed: %v", err)
		}
		// Verification of arbitrary bytes must fail cleanly, never panic.
		_, _ = sig.Verify(sig.Namespace, blob)
	})
}

func needSSHKeygen(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("ssh-keygen")
	if err != nil {
		t.Skip("ssh-keygen not installed (Debian package openssh-client): skipping OpenSSH interop")
	}
	return p
}

func run(t testing.TB, argv ...string) []byte {
	t.Helper()
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, out)
	}
	return out
}

func runSSHKeygenVerify(t testing.TB, pub ssh.PublicKey, sig *Signature, msg []byte) ([]byte, error) {
	t.Helper()
	keygen := needSSHKeygen(t)
	dir := t.TempDir()
	allowed := filepath.Join(dir, "allowed_signers")
	line := "operator@example " + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub))) + "\n"
	sigFile := filepath.Join(dir, "msg.sig")
	if err := os.WriteFile(allowed, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(sigFile, Armor(sig.Marshal()), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(keygen, "-Y", "verify", "-f", allowed, "-I", "operator@example", "-n", testNamespace, "-s", sigFile)
	cmd.Stdin = bytes.NewReader(msg)
	return cmd.CombinedOutput()
}

func verifyWithSSHKeygen(t testing.TB, pub ssh.PublicKey, sig *Signature, msg []byte) {
	t.Helper()
	out, err := runSSHKeygenVerify(t, pub, sig, msg)
	if err != nil {
		t.Fatalf("ssh-keygen -Y verify refused our signature: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "Good") {
		t.Fatalf("ssh-keygen -Y verify did not report a good signature:\n%s", out)
	}
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func parseArmored(t testing.TB, path string) *Signature {
	t.Helper()
	blob, err := Unarmor(readFile(t, path))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	sig, err := Parse(blob)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return sig
}

func parsePub(t testing.TB, path string) ssh.PublicKey {
	t.Helper()
	pub, _, _, _, err := ssh.ParseAuthorizedKey(readFile(t, path))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return pub
}

func fixtureSigner(t testing.TB, kind string) ssh.Signer {
	t.Helper()
	var key any
	var err error
	switch kind {
	case "rsa":
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	case "ecdsa":
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	default:
		t.Fatalf("unknown key kind %q", kind)
	}
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
