package audit

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/signetbus/signet/bus"
	"github.com/signetbus/signet/internal/sshsig"
)

// Signed is the evidence a record keeps of the signed request it is
// about, so that a verifier can re-check who signed it without trusting
// the host that wrote the line (a host, or whoever holds its key, can
// write any line and sign any checkpoint, but cannot sign as an operator).
//
// When no parameter value had to be redacted, Frame is the request frame
// exactly as the host received it (JSON base64): the verifier re-checks
// its signature and that the record's request id, sender, agent, action
// and parameters are the signed ones. Otherwise the frame would put a
// secret in the log, so the record keeps only Sig (the SSHSIG blob, which
// holds the signing key), Digest (the hex digest of the signed payload
// under the signature's hash, sha512: SSHSIG signs that digest, so the
// signature re-verifies without the payload) and Cert (the sender's certificate, when there was one);
// the verifier then proves that the key signed a request, not which one.
type Signed struct {
	Frame  []byte `json:"frame,omitempty"`
	Sig    []byte `json:"sig,omitempty"`
	Digest string `json:"digest,omitempty"`
	Cert   string `json:"cert,omitempty"`
}

// signedEvidence returns the evidence to write for rec, whose redacted
// copy is r: the frame when redaction changed no parameter, else its
// signature and digest. Nil when rec carries no verified frame.
func signedEvidence(rec, r *bus.AuditRecord) *Signed {
	if len(rec.Frame) == 0 {
		return nil
	}
	if bytes.Equal(normalJSON(rec.Params), normalJSON(r.Params)) {
		return &Signed{Frame: rec.Frame}
	}
	req, o, err := bus.ParseRequest(rec.Frame)
	if req == nil || err != nil {
		return nil
	}
	var sum []byte
	switch o.Sig.HashAlg {
	case sshsig.HashSHA512:
		h := sha512.Sum512(o.Envelope.Payload)
		sum = h[:]
	case sshsig.HashSHA256:
		h := sha256.Sum256(o.Envelope.Payload)
		sum = h[:]
	default:
		return nil // the host refused it: it cannot verify
	}
	return &Signed{Sig: o.Sig.Marshal(), Digest: hex.EncodeToString(sum), Cert: req.Sender.Cert}
}

// normalJSON encodes v the way a record's value reads back from the log:
// numbers as float64, so "1.0" in a frame and 1 in the log compare equal.
func normalJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		return nil
	}
	var back any
	if err := json.Unmarshal(b, &back); err != nil {
		return nil
	}
	b, _ = json.Marshal(back)
	return b
}

// certSkew is how far a record's time may lie outside a certificate's
// validity window: the hosts accept requests within this clock skew.
const certSkew = 30 * time.Second

// checkSigned re-verifies the request evidence of one record and returns
// what is wrong, or "" when the signature verifies and the record's fields
// are the signed ones.
func checkSigned(e *Entry, trust *Signers) string {
	s := e.Signed
	var pub ssh.PublicKey
	var certWire string
	if len(s.Frame) > 0 {
		req, o, err := bus.ParseRequest(s.Frame)
		if req == nil || err != nil {
			return fmt.Sprintf("the stored request frame does not parse: %v", err)
		}
		if o.Sig.Namespace != bus.RequestNamespace {
			return fmt.Sprintf("the stored request is signed under namespace %q, not %q", o.Sig.Namespace, bus.RequestNamespace)
		}
		if pub, err = o.Sig.Verify(bus.RequestNamespace, o.Envelope.Payload); err != nil {
			return fmt.Sprintf("the stored request's signature does not verify: %v", err)
		}
		if d := diffRequest(e, req); d != "" {
			return d
		}
		certWire = req.Sender.Cert
	} else {
		sig, err := sshsig.Parse(s.Sig)
		if err != nil {
			return fmt.Sprintf("the stored request signature does not parse: %v", err)
		}
		digest, err := hex.DecodeString(s.Digest)
		if err != nil || len(digest) == 0 {
			return "the stored request digest is not hex"
		}
		if sig.Namespace != bus.RequestNamespace {
			return fmt.Sprintf("the stored request is signed under namespace %q, not %q", sig.Namespace, bus.RequestNamespace)
		}
		if pub, err = ssh.ParsePublicKey(sig.PublicKey); err != nil {
			return fmt.Sprintf("the stored request signature's key does not parse: %v", err)
		}
		if err := sig.VerifyDigest(pub, digest); err != nil {
			return fmt.Sprintf("the stored request's signature does not verify: %v", err)
		}
		certWire = s.Cert
	}
	if fp := ssh.FingerprintSHA256(pub); e.Key != fp {
		return fmt.Sprintf("the record names key %s but the request was signed by %s", e.Key, fp)
	}
	if certWire == "" {
		if trust == nil {
			return ""
		}
		name, ok := trust.Keys[string(pub.Marshal())]
		if !ok {
			return fmt.Sprintf("the request was signed by key %s, which the trust file does not list", e.Key)
		}
		if name != e.Principal {
			return fmt.Sprintf("the record names operator %q but the trust file lists key %s as %q", e.Principal, e.Key, name)
		}
		return ""
	}
	c, err := bus.DecodeCert(certWire)
	if err != nil {
		return fmt.Sprintf("the stored certificate: %v", err)
	}
	if !bytes.Equal(c.Key.Marshal(), pub.Marshal()) {
		return fmt.Sprintf("certificate %s (serial %d) certifies another key than the one that signed the request", c.KeyId, c.Serial)
	}
	if e.Principal != c.KeyId {
		return fmt.Sprintf("the record names operator %q but the certificate's key ID is %q", e.Principal, c.KeyId)
	}
	if err := checkCertAt(c, ssh.UserCert, e.Time); err != nil {
		return err.Error()
	}
	if trust != nil && !trust.CAs[string(c.SignatureKey.Marshal())] {
		return fmt.Sprintf("certificate %s (serial %d) is signed by %s, which the trust file does not list as a cert-authority", c.KeyId, c.Serial, ssh.FingerprintSHA256(c.SignatureKey))
	}
	return ""
}

// provenanceJSON is a provenance as JSON, "{}" when there is none.
func provenanceJSON(p *bus.Provenance) string {
	if p == nil {
		return "{}"
	}
	b, err := json.Marshal(p)
	if err != nil {
		return "?"
	}
	return string(b)
}

// diffRequest compares the record's fields with the signed request's.
func diffRequest(e *Entry, req *bus.Request) string {
	for _, f := range []struct{ name, rec, signed string }{
		{"request id", e.RequestID, req.ID},
		{"user", e.User, req.Sender.User},
		{"key", e.Key, req.Sender.Key},
		{"agent", e.Agent, req.Agent},
		{"action", e.Action, req.Action},
	} {
		if f.rec != f.signed {
			return fmt.Sprintf("the record's %s %q is not the signed request's %q", f.name, f.rec, f.signed)
		}
	}
	if rp, sp := provenanceJSON(e.Provenance), provenanceJSON(req.Provenance); rp != sp {
		return fmt.Sprintf("the record's provenance (run, ticket, build URL, reason) %s is not the signed request's %s", rp, sp)
	}
	if !bytes.Equal(normalJSON(e.Params), normalJSON(req.Params)) {
		return fmt.Sprintf("the record's parameters %s are not the signed request's %s", normalJSON(e.Params), normalJSON(req.Params))
	}
	return ""
}

// checkCertAt checks a certificate's type, its authority's signature and
// that it was valid at t (give or take certSkew), with x/crypto's
// CertChecker. Whether the authority is trusted is the caller's question.
func checkCertAt(c *ssh.Certificate, typ uint32, t time.Time) error {
	if c.CertType != typ {
		return fmt.Errorf("certificate %s (serial %d) has the wrong type %d", c.KeyId, c.Serial, c.CertType)
	}
	if len(c.ValidPrincipals) == 0 {
		return fmt.Errorf("certificate %s (serial %d) names no principals", c.KeyId, c.Serial)
	}
	after := time.Unix(int64(min(c.ValidAfter, 1<<62)), 0)
	before := time.Unix(int64(min(c.ValidBefore, 1<<62)), 0)
	if t.Add(certSkew).Before(after) || (c.ValidBefore != ssh.CertTimeInfinity && !t.Add(-certSkew).Before(before)) {
		return fmt.Errorf("certificate %s (serial %d) was not valid at %s", c.KeyId, c.Serial, t.UTC().Format(time.RFC3339))
	}
	clock := func() time.Time { // inside the window, which was checked with skew above
		at := t
		if at.Before(after) {
			at = after
		}
		if c.ValidBefore != ssh.CertTimeInfinity && !at.Before(before) {
			at = before.Add(-time.Second)
		}
		return at
	}
	if err := (&ssh.CertChecker{Clock: clock}).CheckCert(c.ValidPrincipals[0], c); err != nil {
		return fmt.Errorf("certificate %s (serial %d): %v", c.KeyId, c.Serial, err)
	}
	return nil
}
