package edsign

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"testing"
)

// Every signature is crypto/ed25519's, byte for byte, for random keys and
// messages of every length up to 300 bytes, and it verifies.
func TestSignaturesMatchTheStandardLibrary(t *testing.T) {
	for i := 0; i < 600; i++ {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		msg := make([]byte, i%301)
		rand.Read(msg)
		got := sign(priv, msg)
		if want := ed25519.Sign(priv, msg); !bytes.Equal(got, want) {
			t.Fatalf("key %x, message %x: signature %x, crypto/ed25519 %x", priv.Seed(), msg, got, want)
		}
		if !ed25519.Verify(priv.Public().(ed25519.PublicKey), msg, got) {
			t.Fatalf("signature does not verify")
		}
	}
}

func FuzzSign(f *testing.F) {
	f.Add(make([]byte, 32), []byte("signet"))
	f.Add(bytes.Repeat([]byte{0xff}, 32), []byte{})
	f.Fuzz(func(t *testing.T, seed, msg []byte) {
		if len(seed) != ed25519.SeedSize {
			return
		}
		priv := ed25519.NewKeyFromSeed(seed)
		if got, want := sign(priv, msg), ed25519.Sign(priv, msg); !bytes.Equal(got, want) {
			t.Fatalf("seed %x, message %x: signature %x, crypto/ed25519 %x", seed, msg, got, want)
		}
	})
}

// The Signer hands over to crypto/ed25519 after tableAfter signatures, and
// for Ed25519ph and Ed25519ctx at once; its signatures are the same
// throughout.
func TestSignerHandsOver(t *testing.T) {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	s, err := New(priv)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < tableAfter+3; i++ {
		msg := []byte{byte(i)}
		got, err := s.Sign(nil, msg, crypto.Hash(0))
		if err != nil || !bytes.Equal(got, ed25519.Sign(priv, msg)) {
			t.Fatalf("signature %d: %x %v", i, got, err)
		}
	}
	ctx := &ed25519.Options{Context: "signet"}
	got, err := s.Sign(nil, []byte("m"), ctx)
	if err != nil || ed25519.VerifyWithOptions(priv.Public().(ed25519.PublicKey), []byte("m"), got, ctx) != nil {
		t.Fatalf("Ed25519ctx: %x %v", got, err)
	}
	if _, err := New(priv[:10]); err == nil {
		t.Fatal("a short key was accepted")
	}
}

// A private key whose public half is another key's is refused: signing
// with it would let two signatures of one message reveal the secret.
func TestMismatchedPublicHalfRefused(t *testing.T) {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	other, _, _ := ed25519.GenerateKey(rand.Reader)
	bad := append(append(ed25519.PrivateKey{}, priv[:ed25519.SeedSize]...), other...)
	if _, err := New(bad); err == nil {
		t.Fatal("a key with another key's public half was accepted")
	}
	if _, err := New(priv); err != nil {
		t.Fatalf("a good key was refused: %v", err)
	}
}

func BenchmarkSign(b *testing.B) {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	msg := []byte("a signed signet request of a hundred bytes or so, as the client signs them on every command")
	b.Run("edsign", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			sign(priv, msg)
		}
	})
	b.Run("crypto-ed25519", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			ed25519.Sign(priv, msg)
		}
	})
}
