// Package control is the wire format of signet's emergency controls: the
// revocation list and the set of locks an admin distributes to every host
// over the broker.
//
// # Documents
//
// Each control is one signed Document, the whole current state (never a
// delta): the revocation list under the key "revocations" and the lock set
// under "locks" of the collective's JetStream key-value bucket
// (Bucket). Hosts watch the bucket, so a new document reaches every host
// as soon as the broker delivers it.
//
// A document is JSON, signed with SSHSIG (the request signature format)
// under its own namespace, Namespace, so a request or reply signature can
// never pass as a control and the other way round. The frame is
//
//	{"payload":"<base64 JSON Document>","sig":"<base64 SSHSIG blob>"}
//
// # Who may sign, and replay
//
// A host accepts a document only when its key is in the host's trust file
// with a role that the policy lists under admin_roles, the key is not
// itself revoked, the collective and kind match the key it was stored
// under, it is not dated in the future (beyond the clock skew), and its
// Seq is higher than the last one the host accepted. A broker user can
// therefore neither forge a document, nor replay an old one (an old unlock,
// or the list from before a revocation), nor roll the list back.
//
// # A flooded bucket
//
// A broker user can still write junk under the keys (on a locked-down
// broker through the reply-subject gap), bury the admins' documents under
// more revisions than the bucket keeps, or write without pause so that a
// compare-and-set never succeeds. The hosts hold the truth: each answers
// the read-only action rpcutil control_state (StateAction) with the frames
// it applied. Store.Update, given UpdateOptions.Hosts, builds on the
// newest trusted document the hosts hold when the bucket has none, puts
// plainly after losing the compare-and-set to junk, and then asks the hosts
// whether they applied its document or another admin's with the same Seq.
package control

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/signetbus/signet/internal/sshsig"
)

// Namespace is the SSHSIG namespace of control documents.
const Namespace = "signet-control@v1"

// Document kinds, which are also their keys in the bucket.
const (
	KindRevocations = "revocations"
	KindLocks       = "locks"
)

// Refusal codes a host answers with (bus.Reply.Code).
const (
	CodeRevoked = "revoked"
	CodeLocked  = "locked"
	// CodeStaleRevocations refuses a caller whose role needs a fresh
	// revocation list when the host's list is missing or too old.
	CodeStaleRevocations = "stale_revocations"
)

// Errors of Open and Check.
var (
	ErrMalformed = errors.New("control: malformed control document")
	ErrRollback  = errors.New("control: document is not newer than the one this host has")
)

// Bucket is the key-value bucket holding a collective's controls.
func Bucket(collective string) string { return "signet_control_" + collective }

// Revocation is one entry of the list. Exactly one of Key, KeyID and
// Serial identifies what is revoked.
type Revocation struct {
	// Key is a key's fingerprint, "SHA256:...": requests signed by it (or
	// by a certificate for it) are refused.
	Key string `json:"key,omitempty"`
	// KeyID is a certificate key id: certificates carrying it are refused.
	KeyID string `json:"key_id,omitempty"`
	// Serial is a certificate serial; CA, when set, is the fingerprint of
	// the CA it belongs to (otherwise any CA).
	Serial *uint64 `json:"serial,omitempty"`
	CA     string  `json:"ca,omitempty"`
	// Reason, By (the admin's name) and At (Unix ms) are shown in refusals.
	Reason string `json:"reason"`
	By     string `json:"by"`
	At     int64  `json:"at"`
}

// What describes the revoked thing: "key SHA256:...", "key id X",
// "certificate serial N".
func (r Revocation) What() string {
	switch {
	case r.Key != "":
		return "key " + r.Key
	case r.KeyID != "":
		return fmt.Sprintf("certificate key id %q", r.KeyID)
	case r.Serial != nil && r.CA != "":
		return fmt.Sprintf("certificate serial %d of CA %s", *r.Serial, r.CA)
	case r.Serial != nil:
		return fmt.Sprintf("certificate serial %d", *r.Serial)
	}
	return "nothing"
}

// Subject is what a host knows about a request's signer, to match against
// the list. Certificate fields are zero for a plain key.
type Subject struct {
	Key string // fingerprint of the signing key
	// Cert is true when the signer presented a certificate; then KeyID,
	// Serial and CA (the signing CA's fingerprint) are set.
	Cert   bool
	KeyID  string
	Serial uint64
	CA     string
}

// Scope is where a lock applies. Exactly one field is set.
type Scope struct {
	// All locks every action.
	All bool `json:"all,omitempty"`
	// Agent locks every action of one agent.
	Agent string `json:"agent,omitempty"`
	// Fact locks every action on hosts with the fact KEY=VALUE. An app is
	// the fact app=NAME.
	Fact string `json:"fact,omitempty"`
}

func (s Scope) String() string {
	switch {
	case s.All:
		return "all actions"
	case s.Agent != "":
		return "agent " + s.Agent
	default:
		return "hosts with " + s.Fact
	}
}

// Check reports a scope that sets not exactly one field.
func (s Scope) Check() error {
	n := 0
	if s.All {
		n++
	}
	if s.Agent != "" {
		n++
	}
	if s.Fact != "" {
		n++
		k, v, ok := strings.Cut(s.Fact, "=")
		if !ok || k == "" || v == "" {
			return fmt.Errorf("control: lock fact %q: want KEY=VALUE such as env=prod", s.Fact)
		}
	}
	if n != 1 {
		return errors.New("control: a lock needs exactly one scope: all, an agent or a fact")
	}
	return nil
}

// Matches reports whether the scope covers agent on a host with facts.
func (s Scope) Matches(agent string, facts map[string]string) bool {
	switch {
	case s.All:
		return true
	case s.Agent != "":
		return s.Agent == agent
	case s.Fact != "":
		k, v, _ := strings.Cut(s.Fact, "=")
		have, ok := facts[k]
		return ok && have == v
	}
	return false
}

// Lock makes hosts refuse new actions within Scope.
type Lock struct {
	ID     string `json:"id"`
	Scope  Scope  `json:"scope"`
	Reason string `json:"reason"`
	By     string `json:"by"`
	At     int64  `json:"at"`
}

// Document is a whole revocation list or lock set, as signed.
type Document struct {
	Kind       string `json:"kind"`
	Collective string `json:"collective"`
	// Seq grows with every document of a kind; a host refuses one not
	// higher than the last it accepted.
	Seq uint64 `json:"seq"`
	// Issued is the signing time in Unix milliseconds. The age of the
	// revocation list is measured from it.
	Issued int64 `json:"issued"`
	// By is the signing admin's name, as they claim it; hosts name the
	// key's name from their trust file.
	By      string       `json:"by"`
	Revoked []Revocation `json:"revoked,omitempty"`
	Locks   []Lock       `json:"locks,omitempty"`
}

// IssuedTime returns Issued as a time.
func (d *Document) IssuedTime() time.Time { return time.UnixMilli(d.Issued) }

// Match returns the first entry of the list that revokes s.
func (d *Document) Match(s Subject) (Revocation, bool) {
	if d == nil {
		return Revocation{}, false
	}
	for _, r := range d.Revoked {
		switch {
		case r.Key != "" && r.Key == s.Key:
			return r, true
		case r.KeyID != "" && s.Cert && r.KeyID == s.KeyID:
			return r, true
		case r.Serial != nil && s.Cert && *r.Serial == s.Serial && (r.CA == "" || r.CA == s.CA):
			return r, true
		}
	}
	return Revocation{}, false
}

// Matching returns the locks covering agent on a host with facts.
func (d *Document) Matching(agent string, facts map[string]string) []Lock {
	if d == nil {
		return nil
	}
	var out []Lock
	for _, l := range d.Locks {
		if l.Scope.Matches(agent, facts) {
			out = append(out, l)
		}
	}
	return out
}

// Check validates a document's shape.
func (d *Document) Check() error {
	if d.Kind != KindRevocations && d.Kind != KindLocks {
		return fmt.Errorf("%w: kind %q", ErrMalformed, d.Kind)
	}
	if d.Seq == 0 || d.Issued <= 0 {
		return fmt.Errorf("%w: no seq or issue time", ErrMalformed)
	}
	if d.Kind == KindRevocations && len(d.Locks) > 0 || d.Kind == KindLocks && len(d.Revoked) > 0 {
		return fmt.Errorf("%w: a %s document carries the other kind's entries", ErrMalformed, d.Kind)
	}
	for _, r := range d.Revoked {
		n := 0
		for _, set := range []bool{r.Key != "", r.KeyID != "", r.Serial != nil} {
			if set {
				n++
			}
		}
		if n != 1 {
			return fmt.Errorf("%w: a revocation names exactly one of key, key id and serial", ErrMalformed)
		}
	}
	ids := map[string]bool{}
	for _, l := range d.Locks {
		if err := l.Scope.Check(); err != nil {
			return err
		}
		if l.ID == "" || ids[l.ID] {
			return fmt.Errorf("%w: lock ids must be set and unique", ErrMalformed)
		}
		ids[l.ID] = true
	}
	return nil
}

// frame is the signed envelope.
type frame struct {
	Payload []byte `json:"payload"`
	Sig     []byte `json:"sig"`
}

// Sign signs d with signer under Namespace and returns the frame.
func Sign(rand io.Reader, signer ssh.Signer, d *Document) ([]byte, error) {
	if err := d.Check(); err != nil {
		return nil, err
	}
	payload, err := json.Marshal(d)
	if err != nil {
		return nil, err
	}
	sig, err := sshsig.Sign(rand, signer, Namespace, payload)
	if err != nil {
		return nil, err
	}
	return json.Marshal(frame{Payload: payload, Sig: sig.Marshal()})
}

// Signed is an opened frame whose signature verified against the key it
// carries. Whether that key may sign controls is the host's decision.
type Signed struct {
	Doc *Document
	// Key is the signing key; KeyBlob its wire form, for trust lookups.
	Key     ssh.PublicKey
	KeyBlob []byte
}

// Open parses a frame and verifies its signature under Namespace.
func Open(b []byte) (*Signed, error) {
	var f frame
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	sig, err := sshsig.Parse(f.Sig)
	if err != nil {
		return nil, err
	}
	pub, err := sig.Verify(Namespace, f.Payload)
	if err != nil {
		return nil, err
	}
	d := &Document{}
	if err := json.Unmarshal(f.Payload, d); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if err := d.Check(); err != nil {
		return nil, err
	}
	return &Signed{Doc: d, Key: pub, KeyBlob: sig.PublicKey}, nil
}

// Fingerprint is the signing key's fingerprint.
func (s *Signed) Fingerprint() string { return ssh.FingerprintSHA256(s.Key) }

// Newer reports whether next may replace prev (nil when there is none).
func Newer(prev, next *Document) error {
	if prev != nil && next.Seq <= prev.Seq {
		return fmt.Errorf("%w: %s seq %d, this host has seq %d (an old document replayed or a rollback)", ErrRollback, next.Kind, next.Seq, prev.Seq)
	}
	return nil
}

// LockIDs lists the lock ids of d, sorted.
func (d *Document) LockIDs() []string {
	var ids []string
	if d != nil {
		for _, l := range d.Locks {
			ids = append(ids, l.ID)
		}
	}
	slices.Sort(ids)
	return ids
}
