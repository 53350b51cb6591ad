package bus

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/crypto/ssh"

	"github.com/signetbus/signet/internal/sshsig"
)

// Pending requests and approvals travel through a JetStream key-value
// bucket per collective (ApprovalBucket): "request.ID" holds the
// requester's signed PendingRequest, "approval.ID.TAG" one approver's
// SignedApproval. Everything in it is signed, so a broker user can hide
// entries but not forge one a host would count; entries expire with the
// bucket's TTL, and approvals with their own Expires.

// ApprovalBucket is the key-value bucket of a collective's pending
// requests and approvals.
func ApprovalBucket(collective string) string { return "signet_approvals_" + collective }

// approvalBucketTTL is how long the broker keeps entries.
const approvalBucketTTL = 7 * 24 * time.Hour

// PendingRequest is what a requester publishes for approvers to see: the
// subject, under an id approvers name (signet approve ID).
type PendingRequest struct {
	ID      string          `json:"id"`
	Subject ApprovalSubject `json:"subject"`
	Created int64           `json:"created"`
}

// Pending is a pending request as read back: verified, with its digest
// and the approvals stored for it (not yet checked against any trust).
type Pending struct {
	Request   PendingRequest
	Digest    string
	Approvals []SignedApproval
}

// ApprovalStore is a collective's approvals bucket. It reads the bucket
// with message gets only, never a consumer: on a locked-down broker
// (internal/broker PermissionsFor) operators write this bucket, and a
// consumer of a stream one writes lets one have the broker publish its
// bytes on any subject (nats-server does not check a deliver or reply
// subject against the requester's permissions; docs/security.md).
type ApprovalStore struct {
	kv     jetstream.KeyValue
	st     jetstream.Stream
	bucket string
}

// ApprovalBucketConfig is the approvals bucket of a collective, as the
// client or the broker's provisioning creates it.
func ApprovalBucketConfig(collective string) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{Bucket: ApprovalBucket(collective),
		Description: "signet pending requests and approvals of collective " + collective, TTL: approvalBucketTTL}
}

// OpenApprovalStore opens the collective's approvals bucket in the
// JetStream domain of the broker nc is connected to, creating it when
// missing.
func OpenApprovalStore(ctx context.Context, nc *nats.Conn, collective string) (*ApprovalStore, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("approvals: %w", err)
	}
	return OpenApprovalStoreIn(ctx, js, collective)
}

// OpenApprovalStoreIn is OpenApprovalStore through js: another JetStream
// domain's (a DR site's, reached through its leafnode, where its
// requesters submit) when js was made for it.
func OpenApprovalStoreIn(ctx context.Context, js jetstream.JetStream, collective string) (*ApprovalStore, error) {
	// Open before creating: on a locked-down broker clients may not create
	// streams, and the broker provisions the bucket (ApprovalBucketConfig).
	kv, err := js.KeyValue(ctx, ApprovalBucket(collective))
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = js.CreateOrUpdateKeyValue(ctx, ApprovalBucketConfig(collective))
	}
	if err != nil {
		return nil, fmt.Errorf("approvals: open bucket %s: %w", ApprovalBucket(collective), err)
	}
	st, err := js.Stream(ctx, "KV_"+ApprovalBucket(collective))
	if err != nil {
		return nil, fmt.Errorf("approvals: open bucket %s: %w", ApprovalBucket(collective), err)
	}
	return &ApprovalStore{kv: kv, st: st, bucket: ApprovalBucket(collective)}, nil
}

// maxScan bounds how many stored messages one listing reads.
const maxScan = 100_000

// entries returns the current value of every key of the bucket that
// starts with prefix ("request." or "approval.ID."), read by message gets
// one after another through the stream (the next message at or after a
// sequence on the prefix's subjects); deleted and purged keys are left
// out.
func (s *ApprovalStore) entries(ctx context.Context, prefix string) (map[string][]byte, error) {
	subjects := "$KV." + s.bucket + "."
	out := map[string][]byte{}
	seq := uint64(1)
	for n := 0; ; n++ {
		if n == maxScan {
			return nil, fmt.Errorf("approvals: more than %d entries under %s in bucket %s: someone floods it; an admin purges it (nats kv purge)", maxScan, prefix, s.bucket)
		}
		m, err := s.st.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subjects+prefix+">"))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("approvals: read bucket %s: %w", s.bucket, err)
		}
		key := strings.TrimPrefix(m.Subject, subjects)
		switch m.Header.Get("KV-Operation") {
		case "DEL", "PURGE":
			delete(out, key)
		default:
			out[key] = m.Data
		}
		seq = m.Sequence + 1
	}
}

// Submit signs a pending request with the requester's key and stores it.
// The subject's Requester must be that key.
func (s *ApprovalStore) Submit(ctx context.Context, signer ssh.Signer, p *PendingRequest) error {
	if err := CheckID(p.ID); err != nil {
		return err
	}
	if err := p.Subject.Check(); err != nil {
		return err
	}
	key := KeySigner(signer)
	if fp := ssh.FingerprintSHA256(key.PublicKey()); fp != p.Subject.Requester {
		return fmt.Errorf("%w: the subject names requester %s, the signing key is %s", ErrApproval, p.Subject.Requester, fp)
	}
	payload, err := json.Marshal(p)
	if err != nil {
		return err
	}
	sig, err := sshsig.Sign(rand.Reader, key, PendingNamespace, payload)
	if err != nil {
		return err
	}
	return s.storePending(ctx, p.ID, payload, sig.Marshal())
}

// Approve stores an approval of pending request id.
func (s *ApprovalStore) Approve(ctx context.Context, id string, sa *SignedApproval) error {
	a, _, err := OpenApproval(sa)
	if err != nil {
		return err
	}
	b, err := json.Marshal(sa)
	if err != nil {
		return err
	}
	_, err = s.kv.Put(ctx, "approval."+id+"."+keyTag(a.Key), b)
	return err
}

// keyTag is a key-value-safe tag of a key fingerprint: one approval per
// key and request, the latest kept.
func keyTag(fp string) string {
	sum := sha256.Sum256([]byte(fp))
	return hex.EncodeToString(sum[:8])
}

// openPending verifies a stored pending request: signed under
// PendingNamespace by the key its subject names as the requester.
func openPending(b []byte) (*Pending, error) {
	return (*ApprovalStore)(nil).openPending(context.Background(), "", b)
}

// openPending is the package function for entry id of store s, whose
// parts, when it has any, s reads.
func (s *ApprovalStore) openPending(ctx context.Context, id string, b []byte) (*Pending, error) {
	var f storedPending
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("%w: pending request: %v", ErrApproval, err)
	}
	payload, err := s.payload(ctx, id, &f)
	if err != nil {
		return nil, err
	}
	sig, err := sshsig.Parse(f.Sig)
	if err != nil {
		return nil, fmt.Errorf("%w: pending request: %v", ErrApproval, err)
	}
	pub, err := sig.Verify(PendingNamespace, payload)
	if err != nil {
		return nil, fmt.Errorf("%w: pending request: %v", ErrApproval, err)
	}
	var p PendingRequest
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("%w: pending request: %v", ErrApproval, err)
	}
	if fp := ssh.FingerprintSHA256(pub); fp != p.Subject.Requester {
		return nil, fmt.Errorf("%w: pending request %s names requester %s but is signed by %s", ErrApproval, p.ID, p.Subject.Requester, fp)
	}
	if err := p.Subject.Check(); err != nil {
		return nil, err
	}
	digest, err := SubjectDigest(&p.Subject)
	if err != nil {
		return nil, err
	}
	return &Pending{Request: p, Digest: digest}, nil
}

// ErrNoPending is returned for an id the bucket does not hold.
var ErrNoPending = errors.New("bus: no such pending request")

// Get returns pending request id with its approvals.
func (s *ApprovalStore) Get(ctx context.Context, id string) (*Pending, error) {
	e, err := s.kv.Get(ctx, "request."+id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, fmt.Errorf("%w: %s (expired, or never submitted)", ErrNoPending, id)
	}
	if err != nil {
		return nil, fmt.Errorf("approvals: read %s: %w", id, err)
	}
	p, err := s.openPending(ctx, id, e.Value())
	if err != nil {
		return nil, err
	}
	if p.Request.ID != id {
		return nil, fmt.Errorf("%w: entry request.%s holds request %s", ErrApproval, id, p.Request.ID)
	}
	approvals, err := s.entries(ctx, "approval."+id+".")
	if err != nil {
		return nil, err
	}
	keys := make([]string, 0, len(approvals))
	for k := range approvals {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		var sa SignedApproval
		if json.Unmarshal(approvals[k], &sa) == nil {
			p.Approvals = append(p.Approvals, sa)
		}
	}
	return p, nil
}

// List returns every pending request whose subject has not expired,
// oldest first, with its approvals. Entries that do not verify are left
// out.
func (s *ApprovalStore) List(ctx context.Context, now time.Time) ([]*Pending, error) {
	requests, err := s.entries(ctx, "request.")
	if err != nil {
		return nil, err
	}
	var out []*Pending
	for k := range requests {
		id := strings.TrimPrefix(k, "request.")
		p, err := s.Get(ctx, id)
		if err != nil || p.Request.Subject.Expires < now.UnixMilli() {
			continue
		}
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Request.Created < out[j].Request.Created })
	return out, nil
}

// Valid returns the approvals of p that verify, are for its digest, are
// not expired at now and are not the requester's, one per key: what a
// requester can expect hosts to count (the hosts also check roles).
func (p *Pending) Valid(now time.Time) []SignedApproval {
	var out []SignedApproval
	seen := map[string]bool{}
	for _, sa := range p.Approvals {
		a, _, err := OpenApproval(&sa)
		if err != nil || a.Digest != p.Digest || a.Expires < now.UnixMilli() || a.Key == p.Request.Subject.Requester || seen[a.Key] {
			continue
		}
		seen[a.Key] = true
		out = append(out, sa)
	}
	return out
}

// Wait waits until pending request id has n valid approvals from keys
// other than the requester's (see Valid), and returns them; it gives up
// when ctx ends or the subject expires.
func (s *ApprovalStore) Wait(ctx context.Context, id string, n int, now func() time.Time) ([]SignedApproval, error) {
	for {
		p, err := s.Get(ctx, id)
		if err != nil {
			return nil, err
		}
		if v := p.Valid(now()); len(v) >= n {
			return v, nil
		}
		left := time.UnixMilli(p.Request.Subject.Expires).Sub(now())
		if left <= 0 {
			return nil, fmt.Errorf("%w: request %s expired while waiting for approval", ErrApproval, id)
		}
		// Polled, not watched: a watch is a consumer (see ApprovalStore).
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(min(left, waitPoll)):
		}
	}
}

// waitPoll is how often Wait looks for new approvals.
const waitPoll = 250 * time.Millisecond
