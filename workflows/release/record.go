package release

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/crypto/ssh"

	"github.com/signetbus/signet/internal/sshsig"
)

// RecordNamespace is the SSHSIG namespace of a finished-release record: a
// signature over a request, a reply or a run state never passes for one.
const RecordNamespace = "signet-release@v1"

// RecordsBucket is the JetStream key-value bucket that holds the records
// of finished releases, one key per manifest.
const RecordsBucket = "signet_releases"

// Record says that a release of one manifest finished in one environment.
// It is signed by the operator who ran it and kept on that environment's
// broker, where a later release of the same manifest to another
// environment (production after DR) looks for it.
type Record struct {
	// Manifest is ManifestDigest of the apps, in order.
	Manifest string       `json:"manifest"`
	Apps     []RecordItem `json:"apps"`
	Env      string       `json:"env"`
	Title    string       `json:"title"`
	Ticket   string       `json:"ticket,omitempty"`
	User     string       `json:"user"`
	Finished time.Time    `json:"finished"`
	// DRCheckSkipped is the operator's reason when this release ran
	// without the check that the manifest had finished elsewhere first.
	DRCheckSkipped string `json:"dr_check_skipped,omitempty"`
}

// RecordItem is one app of a Record.
type RecordItem struct {
	App     string `json:"app"`
	Version string `json:"version"`
}

// Records stores the signed records of finished releases.
type Records interface {
	// Put signs and stores r, replacing an older record of the manifest.
	Put(ctx context.Context, r *Record) error
	// Get returns the record of a manifest with the key that signed it,
	// or an error wrapping ErrNoRecord when there is none.
	Get(ctx context.Context, manifest string) (*Record, ssh.PublicKey, error)
}

// Errors of the check that a manifest finished in another environment.
var (
	// ErrNoRecord: no release of this manifest finished there.
	ErrNoRecord = errors.New("release: no finished release of this manifest is recorded")
	// ErrRecordSignature: the stored record does not verify, or was
	// signed by a key this operator does not trust (resume_keys).
	ErrRecordSignature = errors.New("release: the stored record of this manifest is not signed by a trusted key")
)

// ManifestDigest is the SHA-256, in hex, of the manifest's apps and
// versions in order, one "app=version" line each. The title and the
// ticket are not part of it: the same apps at the same versions, copied to
// another ticket, are the same manifest.
func ManifestDigest(items []Item) string {
	h := sha256.New()
	for _, it := range items {
		fmt.Fprintf(h, "%s=%s\n", it.App, it.Version)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func recordItems(items []Item) []RecordItem {
	out := make([]RecordItem, len(items))
	for i, it := range items {
		out[i] = RecordItem(it)
	}
	return out
}

// matches reports whether the record is for exactly these apps.
func (r *Record) matches(items []Item) bool {
	if len(r.Apps) != len(items) {
		return false
	}
	for i, it := range items {
		if r.Apps[i] != RecordItem(it) {
			return false
		}
	}
	return r.Manifest == ManifestDigest(items)
}

type sealedRecord struct {
	Record    json.RawMessage `json:"record"`
	Signature []byte          `json:"signature"`
}

// SealRecord signs the record's JSON with signer under RecordNamespace.
func SealRecord(signer ssh.Signer, r *Record) ([]byte, error) {
	if signer == nil {
		return nil, errors.New("release: a signer is required to record a release")
	}
	b, sig, err := sshsig.SignJSON(rand.Reader, signer, RecordNamespace, r)
	if err != nil {
		return nil, fmt.Errorf("release: sign the record: %w", err)
	}
	return json.Marshal(sealedRecord{Record: b, Signature: sig})
}

// OpenRecord verifies a sealed record and returns it with its signer,
// which must be one of trusted.
func OpenRecord(b []byte, trusted []ssh.PublicKey) (*Record, ssh.PublicKey, error) {
	var sealed sealedRecord
	if err := json.Unmarshal(b, &sealed); err != nil || len(sealed.Record) == 0 || len(sealed.Signature) == 0 {
		return nil, nil, fmt.Errorf("%w: not a signed record", ErrRecordSignature)
	}
	pub, err := sshsig.OpenSigned(sealed.Signature, RecordNamespace, sealed.Record, trusted)
	switch {
	case errors.Is(err, sshsig.ErrUntrustedSigner):
		return nil, pub, fmt.Errorf("%w: signed by %s, which is neither this operator's key nor in resume_keys", ErrRecordSignature, ssh.FingerprintSHA256(pub))
	case err != nil:
		return nil, nil, fmt.Errorf("%w: %w", ErrRecordSignature, err)
	}
	dec := json.NewDecoder(bytes.NewReader(sealed.Record))
	dec.DisallowUnknownFields()
	var r Record
	if err := dec.Decode(&r); err != nil {
		return nil, pub, fmt.Errorf("%w: %w", ErrRecordSignature, err)
	}
	return &r, pub, nil
}

// KVRecords keeps records in a JetStream key-value bucket. The broker is
// not trusted with them: each is signed, and Get verifies the signature
// against the operator's own key and resume_keys.
type KVRecords struct {
	kv      jetstream.KeyValue
	signer  ssh.Signer
	trusted []ssh.PublicKey
}

// RecordsBucketConfig is the records bucket, as the client or the
// broker's provisioning creates it.
func RecordsBucketConfig() jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{Bucket: RecordsBucket, History: 5,
		Description: "signet: signed records of finished releases, one per manifest"}
}

// NewKVRecords creates (or opens) the bucket. signer signs what Put
// stores and may be nil for a store that is only read; trusted are the
// keys whose records Get accepts, besides the signer's.
func NewKVRecords(ctx context.Context, js jetstream.JetStream, signer ssh.Signer, trusted []ssh.PublicKey) (*KVRecords, error) {
	// Open before creating: on a locked-down broker clients may not create
	// streams, and the broker provisions the bucket (RecordsBucketConfig).
	kv, err := js.KeyValue(ctx, RecordsBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = js.CreateOrUpdateKeyValue(ctx, RecordsBucketConfig())
	}
	if err != nil {
		return nil, fmt.Errorf("release: open the %s bucket: %w", RecordsBucket, err)
	}
	s := &KVRecords{kv: kv, signer: signer, trusted: append([]ssh.PublicKey(nil), trusted...)}
	if signer != nil {
		s.trusted = append(s.trusted, signer.PublicKey())
	}
	return s, nil
}

func recordKey(manifest string) (string, error) {
	if len(manifest) != 64 || strings.Trim(manifest, "0123456789abcdef") != "" {
		return "", fmt.Errorf("release: manifest digest %q: want 64 lowercase hex digits", manifest)
	}
	return "m_" + manifest, nil
}

// Put implements Records.
func (s *KVRecords) Put(ctx context.Context, r *Record) error {
	key, err := recordKey(r.Manifest)
	if err != nil {
		return err
	}
	b, err := SealRecord(s.signer, r)
	if err != nil {
		return err
	}
	if _, err := s.kv.Put(ctx, key, b); err != nil {
		return fmt.Errorf("release: store the record: %w", err)
	}
	return nil
}

// Get implements Records.
func (s *KVRecords) Get(ctx context.Context, manifest string) (*Record, ssh.PublicKey, error) {
	key, err := recordKey(manifest)
	if err != nil {
		return nil, nil, err
	}
	e, err := s.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil, ErrNoRecord
	}
	if err != nil {
		return nil, nil, fmt.Errorf("release: read the record: %w", err)
	}
	r, pub, err := OpenRecord(e.Value(), s.trusted)
	if err != nil {
		return nil, pub, err
	}
	if r.Manifest != manifest {
		return nil, pub, fmt.Errorf("%w: it is stored under manifest %s but names %s", ErrRecordSignature, manifest, r.Manifest)
	}
	return r, pub, nil
}
