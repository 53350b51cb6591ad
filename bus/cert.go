package bus

import (
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/signetbus/signet/internal/grammar"
)

// CertAuthority is an SSH certificate authority a host trusts for user
// certificates (a cert-authority line of its trust file).
type CertAuthority struct {
	// Name names the authority in refusals and logs.
	Name string
	// Roles are the roles its certificates may grant: a certificate's
	// principals are role names, and only those listed here count.
	Roles       []string
	Fingerprint string
	Key         ssh.PublicKey
}

// CertTrust is the part of a Trust that knows certificate authorities. A
// Trust without it refuses every request that carries a certificate.
type CertTrust interface {
	LookupCA(blob []byte) (*CertAuthority, bool)
}

// HostAuthorities is the part of a HostKeys that knows host certificate
// authorities (known_hosts @cert-authority lines). A HostKeys without it
// trusts no host certificate.
type HostAuthorities interface {
	// HostCA reports whether ca is trusted to certify identity.
	HostCA(identity string, ca ssh.PublicKey) bool
}

// CodeCertificate refuses a request whose certificate is not acceptable:
// expired or not yet valid, a host certificate, no role in common with its
// authority, a critical option the host does not understand, or a key ID
// that is not an operator name.
const CodeCertificate = "bad_certificate"

// ErrCertificate is wrapped by every certificate check's error.
var ErrCertificate = errors.New("bus: certificate not acceptable")

// ErrHostCA is wrapped when a reply's host certificate is signed by an
// authority known_hosts does not trust for the host: an unknown host, as
// for an unpinned key.
var ErrHostCA = errors.New("bus: host certificate authority not trusted")

// certSigner returns the certificate a signer presents, if any. A signer
// made with ssh.NewCertSigner presents *ssh.Certificate; an ssh-agent key
// presents its certificate as an agent key of a -cert- type.
func certSigner(s ssh.Signer) (*ssh.Certificate, ssh.Signer) {
	cert, ok := s.PublicKey().(*ssh.Certificate)
	if !ok {
		return nil, s
	}
	return cert, keySigner{Signer: s, pub: cert.Key}
}

// KeySigner returns the signer of the key itself when s presents a
// certificate, and s otherwise: what signs other things than requests
// (run state, which is trusted by key) with an operator's certified key.
func KeySigner(s ssh.Signer) ssh.Signer {
	_, k := certSigner(s)
	return k
}

// keySigner signs with a certificate signer but presents the certified
// key: SSHSIG signatures carry the plain key, and the certificate travels
// in the signed payload.
type keySigner struct {
	ssh.Signer
	pub ssh.PublicKey
}

func (k keySigner) PublicKey() ssh.PublicKey { return k.pub }

// EncodeCert is the wire form of a certificate in Sender.Cert and
// Reply.HostCert: standard base64 of its SSH encoding, as in a -cert.pub
// file.
func EncodeCert(c *ssh.Certificate) string { return base64.StdEncoding.EncodeToString(c.Marshal()) }

// DecodeCert parses the wire form of a certificate.
func DecodeCert(s string) (*ssh.Certificate, error) {
	blob, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%w: not base64: %v", ErrCertificate, err)
	}
	pub, err := ssh.ParsePublicKey(blob)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCertificate, err)
	}
	c, ok := pub.(*ssh.Certificate)
	if !ok {
		return nil, fmt.Errorf("%w: a plain %s key, not a certificate", ErrCertificate, pub.Type())
	}
	return c, nil
}

// CertValid checks a certificate's validity window at now, allowing skew
// on either side, and says how far off it is.
func CertValid(c *ssh.Certificate, now time.Time, skew time.Duration) error {
	after := time.Unix(int64(min(c.ValidAfter, 1<<62)), 0)
	if now.Add(skew).Before(after) {
		return fmt.Errorf("%w: certificate %s (serial %d) is not valid until %s, %s from now",
			ErrCertificate, c.KeyId, c.Serial, after.UTC().Format(time.RFC3339), after.Sub(now).Round(time.Second))
	}
	if c.ValidBefore != ssh.CertTimeInfinity {
		before := time.Unix(int64(min(c.ValidBefore, 1<<62)), 0)
		if !now.Add(-skew).Before(before) {
			return fmt.Errorf("%w: certificate %s (serial %d) expired at %s, %s ago",
				ErrCertificate, c.KeyId, c.Serial, before.UTC().Format(time.RFC3339), now.Sub(before).Round(time.Second))
		}
	}
	return nil
}

// checkCert checks everything about a certificate but who signed it: the
// type, the window (with skew), critical options (none is understood, so
// any is refused) and the authority's signature over it, with x/crypto's
// CertChecker. principal must be one of the certificate's principals.
func checkCert(c *ssh.Certificate, typ uint32, principal string, now time.Time, skew time.Duration, sigVerified bool) error {
	if c.CertType != typ {
		kinds := map[uint32]string{ssh.UserCert: "user", ssh.HostCert: "host"}
		return fmt.Errorf("%w: certificate %s (serial %d) is a %s certificate, want a %s certificate",
			ErrCertificate, c.KeyId, c.Serial, kinds[c.CertType], kinds[typ])
	}
	if err := CertValid(c, now, skew); err != nil {
		return err
	}
	if len(c.ValidPrincipals) == 0 {
		return fmt.Errorf("%w: certificate %s (serial %d) names no principals; signet accepts none valid for everyone", ErrCertificate, c.KeyId, c.Serial)
	}
	for opt := range c.CriticalOptions {
		return fmt.Errorf("%w: certificate %s (serial %d) carries critical option %q, which signet does not understand",
			ErrCertificate, c.KeyId, c.Serial, opt)
	}
	if sigVerified {
		return nil
	}
	// The window is checked above with skew; CertChecker's own check
	// (without skew) sees a time inside it.
	clock := func() time.Time {
		t := now
		if after := time.Unix(int64(min(c.ValidAfter, 1<<62)), 0); t.Before(after) {
			t = after
		}
		if c.ValidBefore != ssh.CertTimeInfinity {
			if before := time.Unix(int64(min(c.ValidBefore, 1<<62)), 0); !t.Before(before) {
				t = before.Add(-time.Second)
			}
		}
		return t
	}
	checker := &ssh.CertChecker{Clock: clock}
	if err := checker.CheckCert(principal, c); err != nil {
		return fmt.Errorf("%w: certificate %s (serial %d): %v", ErrCertificate, c.KeyId, c.Serial, strings.TrimPrefix(err.Error(), "ssh: "))
	}
	return nil
}

// certCache remembers user certificates whose authority signature
// verified, parsed, by their wire form (which includes the authority's key
// and signature), so an operator's many requests cost one signature check
// each, like a plain key's, and not two. Everything else (trust in the
// authority, type, window, principals, critical options) is checked on
// every request. The zero value is ready.
type certCache struct {
	mu sync.Mutex
	ok map[string]*ssh.Certificate
}

// certCacheSize bounds the cache; when full it starts again empty.
const certCacheSize = 4096

func (cc *certCache) get(wire string) (*ssh.Certificate, bool) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	c, ok := cc.ok[wire]
	return c, ok
}

func (cc *certCache) add(wire string, c *ssh.Certificate) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cc.ok == nil || len(cc.ok) >= certCacheSize {
		cc.ok = make(map[string]*ssh.Certificate)
	}
	cc.ok[wire] = c
}

// authenticateCert checks a request that carries a user certificate: the
// certificate is signed by an authority this host trusts, valid now, a
// user certificate for the key that signed the request, with at least one
// principal that is a role the authority may grant. The principal's name
// is the certificate's key ID and its roles those principals.
func (r *Responder) authenticateCert(req *Request, o *Opened) (*Principal, *refusal) {
	ct, ok := r.cfg.Trust.(CertTrust)
	if !ok {
		return nil, &refusal{CodeUntrusted, "this host trusts no certificate authority; the request carries a certificate"}
	}
	c, cached := r.certs.get(req.Sender.Cert)
	if !cached {
		var err error
		if c, err = DecodeCert(req.Sender.Cert); err != nil {
			return nil, &refusal{CodeCertificate, err.Error()}
		}
	}
	ca, ok := ct.LookupCA(c.SignatureKey.Marshal())
	if !ok {
		return nil, &refusal{CodeUntrusted, fmt.Sprintf("certificate %s (serial %d) is signed by %s, which is not a certificate authority this host trusts",
			c.KeyId, c.Serial, ssh.FingerprintSHA256(c.SignatureKey))}
	}
	if string(c.Key.Marshal()) != string(o.Sig.PublicKey) {
		return nil, &refusal{CodeBadSignature, fmt.Sprintf("certificate %s (serial %d) certifies %s, but the request is signed by another key",
			c.KeyId, c.Serial, ssh.FingerprintSHA256(c.Key))}
	}
	var roles []string
	for _, p := range c.ValidPrincipals {
		if slices.Contains(ca.Roles, p) && !slices.Contains(roles, p) {
			roles = append(roles, p)
		}
	}
	if len(roles) == 0 {
		return nil, &refusal{CodeCertificate, fmt.Sprintf("certificate %s (serial %d) names principals %s, none of them a role that authority %s may grant here (%s)",
			c.KeyId, c.Serial, strings.Join(c.ValidPrincipals, ","), ca.Name, strings.Join(ca.Roles, ","))}
	}
	if err := checkCert(c, ssh.UserCert, roles[0], r.cfg.Now(), r.cfg.ClockSkew, cached); err != nil {
		return nil, &refusal{CodeCertificate, err.Error()}
	}
	if err := grammar.CheckOperator(c.KeyId); err != nil {
		return nil, &refusal{CodeCertificate, fmt.Sprintf("certificate serial %d: key ID names the operator: %v", c.Serial, err)}
	}
	if !cached {
		r.certs.add(req.Sender.Cert, c)
	}
	fp := ssh.FingerprintSHA256(c.Key)
	return &Principal{Name: c.KeyId, Roles: roles, Fingerprint: fp, Key: c.Key, Cert: c}, nil
}

// hostCertSkew is how far a client's clock may be from a host
// certificate's validity window.
const hostCertSkew = 30 * time.Second

// verifyHostCert checks the host certificate a reply carries for identity:
// a host certificate, valid now (with skew), naming identity among its
// principals, signed by an authority trusted for identity, certifying the
// key that signed the reply.
func verifyHostCert(keys HostKeys, identity, cert string, sigKey []byte, now time.Time, skew time.Duration) (ssh.PublicKey, error) {
	c, err := DecodeCert(cert)
	if err != nil {
		return nil, err
	}
	ha, ok := keys.(HostAuthorities)
	if !ok || !ha.HostCA(identity, c.SignatureKey) {
		return nil, fmt.Errorf("%w: host certificate of %s is signed by %s, which known_hosts does not trust for %s",
			ErrHostCA, identity, ssh.FingerprintSHA256(c.SignatureKey), identity)
	}
	if !slices.Contains(c.ValidPrincipals, identity) {
		return nil, fmt.Errorf("%w: reply from %s is signed by a host certified as %s (serial %d), not as %s",
			ErrCertificate, identity, strings.Join(c.ValidPrincipals, ","), c.Serial, identity)
	}
	if err := checkCert(c, ssh.HostCert, identity, now, skew, false); err != nil {
		return nil, err
	}
	if string(c.Key.Marshal()) != string(sigKey) {
		return nil, fmt.Errorf("%w: host certificate of %s certifies %s, but the reply is signed by another key",
			ErrCertificate, identity, ssh.FingerprintSHA256(c.Key))
	}
	return c.Key, nil
}
