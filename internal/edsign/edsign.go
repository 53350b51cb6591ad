// Package edsign makes ed25519 signatures for processes that sign a few
// times and exit, as the signet client does for every command.
//
// crypto/ed25519 computes R = r·B with a table of 256 multiples of the base
// point that it builds on a process's first signature, one field inversion
// per entry: about 2 ms on this project's machines, fifty times what a
// signature costs once the table exists, and more than the rest of a
// process start of `signet ping`. Signer computes R with
// filippo.io/edwards25519's constant-time variable-base scalar
// multiplication instead (the standard library's own curve code, exported),
// which needs no table: about 70 µs per signature. After its first
// tableAfter signatures, when the table has paid for itself, it hands over
// to crypto/ed25519.
//
// New checks once that the key's public half is its seed's (one more
// scalar multiplication, about 70 µs): signing with a mismatched half
// would reveal the secret scalar.
//
// The signatures are RFC 8032's, deterministic, and byte for byte those of
// crypto/ed25519 (TestSignaturesMatchTheStandardLibrary, FuzzSign).
package edsign

import (
	"crypto"
	"crypto/ed25519"
	"crypto/sha512"
	"crypto/subtle"
	"errors"
	"io"
	"sync/atomic"

	"filippo.io/edwards25519"
)

// tableAfter is how many signatures a Signer makes before it hands over to
// crypto/ed25519: by then the 2 ms its table costs once are less than what
// a signature without the table costs more (about 30 µs each).
const tableAfter = 64

// Signer is a crypto.Signer for an ed25519 private key (see the package
// documentation).
type Signer struct {
	priv ed25519.PrivateKey
	n    atomic.Int64
}

// New returns a Signer for priv.
func New(priv ed25519.PrivateKey) (*Signer, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return nil, errors.New("edsign: not an ed25519 private key")
	}
	// The public half of the key goes into every signature's hash: a key
	// whose public half is not its seed's would give two signatures of
	// one message the same nonce and different hashes, which reveals the
	// secret scalar. Check it once, without the table.
	h := sha512.Sum512(priv[:ed25519.SeedSize])
	sc, err := edwards25519.NewScalar().SetBytesWithClamping(h[:32])
	if err != nil {
		return nil, errors.New("edsign: not an ed25519 private key")
	}
	pub := new(edwards25519.Point).ScalarMult(sc, edwards25519.NewGeneratorPoint()).Bytes()
	if subtle.ConstantTimeCompare(pub, priv[ed25519.SeedSize:]) != 1 {
		return nil, errors.New("edsign: the private key's public half does not match its seed")
	}
	return &Signer{priv: priv}, nil
}

// Public returns the ed25519.PublicKey of the key.
func (s *Signer) Public() crypto.PublicKey { return s.priv.Public() }

// Sign signs message as crypto/ed25519.PrivateKey.Sign does. Ed25519ph and
// Ed25519ctx (opts with a hash or a context) go to crypto/ed25519.
func (s *Signer) Sign(rand io.Reader, message []byte, opts crypto.SignerOpts) ([]byte, error) {
	if o, ok := opts.(*ed25519.Options); ok && o.Context != "" || opts.HashFunc() != crypto.Hash(0) || s.n.Add(1) > tableAfter {
		return s.priv.Sign(rand, message, opts)
	}
	return sign(s.priv, message), nil
}

// sign is RFC 8032's Ed25519 signing (section 5.1.6).
func sign(priv ed25519.PrivateKey, message []byte) []byte {
	h := sha512.Sum512(priv[:ed25519.SeedSize])
	s, err := edwards25519.NewScalar().SetBytesWithClamping(h[:32])
	if err != nil {
		panic("edsign: clamping a 32-byte scalar failed")
	}
	mh := sha512.New()
	mh.Write(h[32:])
	mh.Write(message)
	var digest [64]byte
	r, err := edwards25519.NewScalar().SetUniformBytes(mh.Sum(digest[:0]))
	if err != nil {
		panic("edsign: reducing a 64-byte digest failed")
	}
	R := new(edwards25519.Point).ScalarMult(r, edwards25519.NewGeneratorPoint()).Bytes()
	kh := sha512.New()
	kh.Write(R)
	kh.Write(priv[ed25519.SeedSize:])
	kh.Write(message)
	k, err := edwards25519.NewScalar().SetUniformBytes(kh.Sum(digest[:0]))
	if err != nil {
		panic("edsign: reducing a 64-byte digest failed")
	}
	S := edwards25519.NewScalar().MultiplyAdd(k, s, r)
	return append(R, S.Bytes()...)
}
