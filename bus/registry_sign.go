package bus

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/signetbus/signet/internal/sshsig"
)

// RegistryNamespace is the SSHSIG namespace of a signed registry entry.
const RegistryNamespace = "signet-registry@v1"

// ErrRegistryEntry is wrapped by the error that says why a registry entry
// was ignored: it is unsigned, or not signed by the host it names.
var ErrRegistryEntry = errors.New("bus: registry entry does not verify")

// signedEntry is a registry value: the registration's JSON, exactly the
// bytes that were signed, the SSHSIG signature over them by the host's key,
// and the host certificate when the host presents one.
type signedEntry struct {
	Registration json.RawMessage `json:"registration"`
	Sig          []byte          `json:"sig"`
	HostCert     string          `json:"host_cert,omitempty"`
}

// SignRegistration signs a registration with the host's key, as the value
// of its registry entry. When the signer presents a host certificate, the
// entry carries it and is signed by the certified key.
func SignRegistration(signer ssh.Signer, reg *Registration) ([]byte, error) {
	body, err := json.Marshal(reg)
	if err != nil {
		return nil, fmt.Errorf("registry: encode %s: %w", reg.Identity, err)
	}
	e := signedEntry{Registration: body}
	cert, s := certSigner(signer)
	if cert != nil {
		e.HostCert = EncodeCert(cert)
	}
	sig, err := sshsig.Sign(rand.Reader, s, RegistryNamespace, body)
	if err != nil {
		return nil, fmt.Errorf("registry: sign %s: %w", reg.Identity, err)
	}
	e.Sig = sig.Marshal()
	return json.Marshal(e)
}

// VerifyRegistration checks a registry value stored under key: it must be
// signed, by the host key known_hosts pins for the identity it names, or
// by a key whose host certificate an authority trusted for that identity
// signed; and the identity must be the key. Anyone with write access to
// the bucket could otherwise announce a host, or rewrite a real host's
// facts and agents so that a deploy plans on them.
func VerifyRegistration(keys HostKeys, key string, value []byte, now time.Time) (*Registration, error) {
	var e signedEntry
	dec := json.NewDecoder(bytes.NewReader(value))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil || len(e.Registration) == 0 || len(e.Sig) == 0 {
		return nil, fmt.Errorf("%w: entry %q is not signed (a host older than this client, or a forgery)", ErrRegistryEntry, key)
	}
	var reg Registration
	if err := json.Unmarshal(e.Registration, &reg); err != nil {
		return nil, fmt.Errorf("%w: entry %q: %v", ErrRegistryEntry, key, err)
	}
	if reg.Identity != key {
		return nil, fmt.Errorf("%w: entry %q names host %q", ErrRegistryEntry, key, reg.Identity)
	}
	sig, err := sshsig.Parse(e.Sig)
	if err != nil {
		return nil, fmt.Errorf("%w: entry %q: %v", ErrRegistryEntry, key, err)
	}
	if sig.Namespace != RegistryNamespace {
		return nil, fmt.Errorf("%w: entry %q is signed for namespace %q", ErrRegistryEntry, key, sig.Namespace)
	}
	pub, ok := keys.Lookup(key)
	if (!ok || !bytes.Equal(sig.PublicKey, pub.Marshal())) && e.HostCert != "" {
		if pub, err = verifyHostCert(keys, key, e.HostCert, sig.PublicKey, now, hostCertSkew); err != nil {
			return nil, fmt.Errorf("%w: entry %q: %w", ErrRegistryEntry, key, err)
		}
		ok = true
	}
	if !ok {
		return nil, fmt.Errorf("%w: entry %q: %s", ErrRegistryEntry, key, unknownHostError(key))
	}
	if !bytes.Equal(sig.PublicKey, pub.Marshal()) {
		return nil, fmt.Errorf("%w: entry %q is signed by %s, not by the host key of %s", ErrRegistryEntry, key, fingerprintBlob(sig.PublicKey), key)
	}
	if err := sig.VerifyWith(pub, e.Registration); err != nil {
		return nil, fmt.Errorf("%w: entry %q: %w", ErrRegistryEntry, key, err)
	}
	return &reg, nil
}

func fingerprintBlob(blob []byte) string {
	pub, err := ssh.ParsePublicKey(blob)
	if err != nil {
		return "an unparseable key"
	}
	return ssh.FingerprintSHA256(pub)
}

// Verify makes List return only entries that VerifyRegistration accepts
// against keys, and call report with each entry it ignores (report may be
// nil). Entries of hosts keys does not cover at all (no pinned key, no
// trusted authority for the name) are listed unverified: a client reports
// them as unknown hosts and sends them nothing. A client sets it with its known_hosts (NewClient does when the
// registry has no verifier yet); without it List trusts every entry.
func (r *Registry) Verify(keys HostKeys, report func(key string, err error)) {
	r.mu.Lock()
	r.keys, r.report, r.verified = keys, report, nil
	r.mu.Unlock()
}

// verifiedEntry remembers an entry value that verified, so that listing a
// large fleet again (a deploy lists it often) checks a hash, not a
// signature, per unchanged entry; hosts rewrite theirs every third of the
// TTL. A host certificate may expire, so a verification is reused for at
// most verifiedFor.
type verifiedEntry struct {
	sum [sha256.Size]byte
	at  time.Time
	reg *Registration
}

const verifiedFor = time.Minute

// decode turns one bucket value into a registration: verified when the
// registry has keys, else read as it is (signed or not).
func (r *Registry) decode(key string, value []byte) *Registration {
	r.mu.Lock()
	keys, report := r.keys, r.report
	r.mu.Unlock()
	// A host known_hosts does not cover cannot be verified, and cannot be
	// trusted either: its entry is listed as it is, so that the client
	// reports it as an unknown host (naming the fix) and sends it nothing.
	if keys != nil && hostCovered(keys, key) {
		now := time.Now()
		sum := sha256.Sum256(value)
		r.mu.Lock()
		c, ok := r.verified[key]
		r.mu.Unlock()
		if ok && c.sum == sum && now.Sub(c.at) < verifiedFor {
			reg := *c.reg
			return &reg
		}
		reg, err := VerifyRegistration(keys, key, value, now)
		if err != nil {
			if report != nil {
				report(key, err)
			}
			return nil
		}
		r.mu.Lock()
		if r.verified == nil {
			r.verified = map[string]verifiedEntry{}
		}
		r.verified[key] = verifiedEntry{sum: sum, at: now, reg: reg}
		r.mu.Unlock()
		cp := *reg
		return &cp
	}
	var e signedEntry
	if json.Unmarshal(value, &e) == nil && len(e.Registration) > 0 {
		value = e.Registration
	}
	var reg Registration
	if err := json.Unmarshal(value, &reg); err != nil || reg.Identity != key {
		return nil // a malformed entry is skipped, not fatal
	}
	return &reg
}

// hostCovered reports whether a host's signature could be verified: its
// key is pinned, or (when keys has a Covers method, as known_hosts does) a
// host certificate authority is trusted for that name.
func hostCovered(keys HostKeys, identity string) bool {
	if _, ok := keys.Lookup(identity); ok {
		return true
	}
	cv, ok := keys.(interface{ Covers(string) bool })
	return ok && cv.Covers(identity)
}
