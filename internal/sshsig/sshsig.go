// Package sshsig implements OpenSSH's SSHSIG signature format
// (PROTOCOL.sshsig), the format `ssh-keygen -Y sign` writes and
// `ssh-keygen -Y verify` checks. signet signs every request and reply this
// way, so a recorded request can be checked with stock OpenSSH tools.
//
// Only ed25519 keys are accepted: plain ssh-ed25519, and
// sk-ssh-ed25519@openssh.com for FIDO hardware keys held by ssh-agent.
package sshsig

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"strings"

	"golang.org/x/crypto/ssh"
)

const (
	magic   = "SSHSIG"
	version = 1

	// HashSHA512 is the hash signet signs with, as ssh-keygen does by default.
	HashSHA512 = "sha512"
	// HashSHA256 is accepted when verifying.
	HashSHA256 = "sha256"

	armorBegin = "-----BEGIN SSH SIGNATURE-----"
	armorEnd   = "-----END SSH SIGNATURE-----"
)

// Errors returned by Verify.
var (
	ErrNamespace = errors.New("sshsig: signature is for another namespace")
	ErrKeyType   = errors.New("sshsig: only ed25519 keys are accepted")
	ErrHash      = errors.New("sshsig: unsupported hash algorithm")
	ErrBadSig    = errors.New("sshsig: signature does not verify")
)

// ParseError reports a malformed signature blob and where it broke.
type ParseError struct {
	Offset int
	Msg    string
}

func (e *ParseError) Error() string {
	return fmt.Sprintf("sshsig: malformed signature at byte %d: %s", e.Offset, e.Msg)
}

// Signature is a parsed SSHSIG blob.
type Signature struct {
	// PublicKey is the wire form of the signer's public key; it is the key
	// to look up in a trust store.
	PublicKey []byte
	Namespace string
	HashAlg   string
	// Sig is the wire form of the ssh signature (format and blob).
	Sig []byte
}

// Sign signs message under namespace with signer, hashing with SHA-512.
// signer may be a key loaded from a file or one held by ssh-agent.
func Sign(rand io.Reader, signer ssh.Signer, namespace string, message []byte) (*Signature, error) {
	if namespace == "" {
		return nil, errors.New("sshsig: empty namespace")
	}
	pub := signer.PublicKey()
	if !ed25519Type(pub.Type()) {
		return nil, fmt.Errorf("%w (got %s)", ErrKeyType, pub.Type())
	}
	h := sha512.Sum512(message)
	sig, err := signer.Sign(rand, signedData(namespace, HashSHA512, h[:]))
	if err != nil {
		return nil, fmt.Errorf("sshsig: sign: %w", err)
	}
	return &Signature{
		PublicKey: pub.Marshal(),
		Namespace: namespace,
		HashAlg:   HashSHA512,
		Sig:       ssh.Marshal(sig),
	}, nil
}

// Verify checks that s is a valid signature of message under namespace by
// the key in s.PublicKey, and returns that key. The caller still has to
// decide whether it trusts the key.
func (s *Signature) Verify(namespace string, message []byte) (ssh.PublicKey, error) {
	if s.Namespace != namespace {
		return nil, fmt.Errorf("%w: %q, want %q", ErrNamespace, s.Namespace, namespace)
	}
	pub, err := ssh.ParsePublicKey(s.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("sshsig: public key: %w", err)
	}
	return pub, s.VerifyWith(pub, message)
}

// VerifyWith is Verify with a public key the caller has already parsed
// (from a trust store keyed by s.PublicKey), which saves the parse on hot
// paths. It does not check the namespace.
func (s *Signature) VerifyWith(pub ssh.PublicKey, message []byte) error {
	if !ed25519Type(pub.Type()) {
		return fmt.Errorf("%w (got %s)", ErrKeyType, pub.Type())
	}
	var h hash.Hash
	switch s.HashAlg {
	case HashSHA512:
		h = sha512.New()
	case HashSHA256:
		h = sha256.New()
	default:
		return fmt.Errorf("%w: %q", ErrHash, s.HashAlg)
	}
	h.Write(message)
	return s.VerifyDigest(pub, h.Sum(nil))
}

// VerifyDigest is VerifyWith given the message's digest (s.HashAlg) instead
// of the message: SSHSIG signs the digest, so a signature can be checked
// later without keeping a message that must not be kept (the audit log
// keeps a request's digest when its parameters hold a secret). It does not
// check the namespace.
func (s *Signature) VerifyDigest(pub ssh.PublicKey, digest []byte) error {
	if !ed25519Type(pub.Type()) {
		return fmt.Errorf("%w (got %s)", ErrKeyType, pub.Type())
	}
	var sig ssh.Signature
	if err := ssh.Unmarshal(s.Sig, &sig); err != nil {
		return fmt.Errorf("sshsig: signature field: %w", err)
	}
	if err := pub.Verify(signedData(s.Namespace, s.HashAlg, digest), &sig); err != nil {
		return ErrBadSig
	}
	return nil
}

// Marshal returns the binary SSHSIG blob.
func (s *Signature) Marshal() []byte {
	var b bytes.Buffer
	b.Grow(6 + 4 + 5*4 + len(s.PublicKey) + len(s.Namespace) + len(s.HashAlg) + len(s.Sig))
	b.WriteString(magic)
	binary.Write(&b, binary.BigEndian, uint32(version))
	writeString(&b, s.PublicKey)
	writeString(&b, []byte(s.Namespace))
	writeString(&b, nil) // reserved
	writeString(&b, []byte(s.HashAlg))
	writeString(&b, s.Sig)
	return b.Bytes()
}

// Parse parses a binary SSHSIG blob strictly: no trailing bytes, a
// non-empty reserved field is refused.
func Parse(blob []byte) (*Signature, error) {
	p := parser{b: blob}
	if len(blob) < 10 || string(blob[:6]) != magic {
		return nil, &ParseError{0, "missing SSHSIG preamble"}
	}
	p.off = 6
	if v := binary.BigEndian.Uint32(blob[6:10]); v != version {
		return nil, &ParseError{6, fmt.Sprintf("unsupported version %d", v)}
	}
	p.off = 10
	s := &Signature{}
	s.PublicKey = p.str("public key")
	s.Namespace = string(p.str("namespace"))
	reservedAt := p.off
	reserved := p.str("reserved")
	s.HashAlg = string(p.str("hash algorithm"))
	s.Sig = p.str("signature")
	if p.err != nil {
		return nil, p.err
	}
	if len(reserved) != 0 {
		return nil, &ParseError{reservedAt, "reserved field is not empty"}
	}
	if p.off != len(blob) {
		return nil, &ParseError{p.off, "trailing bytes"}
	}
	return s, nil
}

// Armor wraps a binary blob in the PEM-like text form ssh-keygen reads.
func Armor(blob []byte) []byte {
	enc := base64.StdEncoding.EncodeToString(blob)
	var b strings.Builder
	b.WriteString(armorBegin + "\n")
	for len(enc) > 70 {
		b.WriteString(enc[:70] + "\n")
		enc = enc[70:]
	}
	b.WriteString(enc + "\n" + armorEnd + "\n")
	return []byte(b.String())
}

// Unarmor undoes Armor.
func Unarmor(text []byte) ([]byte, error) {
	s := strings.TrimSpace(string(text))
	if !strings.HasPrefix(s, armorBegin) || !strings.HasSuffix(s, armorEnd) {
		return nil, errors.New("sshsig: not an armored SSH SIGNATURE")
	}
	body := strings.TrimSuffix(strings.TrimPrefix(s, armorBegin), armorEnd)
	body = strings.Join(strings.Fields(body), "")
	blob, err := base64.StdEncoding.DecodeString(body)
	if err != nil {
		return nil, fmt.Errorf("sshsig: armored signature: %w", err)
	}
	return blob, nil
}

func ed25519Type(t string) bool {
	return t == ssh.KeyAlgoED25519 || t == ssh.KeyAlgoSKED25519
}

func signedData(namespace, hashAlg string, digest []byte) []byte {
	var b bytes.Buffer
	b.Grow(6 + 4*4 + len(namespace) + len(hashAlg) + len(digest))
	b.WriteString(magic)
	writeString(&b, []byte(namespace))
	writeString(&b, nil)
	writeString(&b, []byte(hashAlg))
	writeString(&b, digest)
	return b.Bytes()
}

func writeString(b *bytes.Buffer, s []byte) {
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(s)))
	b.Write(n[:])
	b.Write(s)
}

type parser struct {
	b   []byte
	off int
	err error
}

func (p *parser) str(field string) []byte {
	if p.err != nil {
		return nil
	}
	if len(p.b)-p.off < 4 {
		p.err = &ParseError{p.off, field + ": truncated length"}
		return nil
	}
	n := binary.BigEndian.Uint32(p.b[p.off:])
	if uint64(n) > uint64(len(p.b)-p.off-4) {
		p.err = &ParseError{p.off, fmt.Sprintf("%s: length %d overruns the blob", field, n)}
		return nil
	}
	s := p.b[p.off+4 : p.off+4+int(n)]
	p.off += 4 + int(n)
	return s
}
