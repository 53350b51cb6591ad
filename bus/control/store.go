package control

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/crypto/ssh"

	"github.com/signetbus/signet/internal/replicas"
)

// Store is a collective's control bucket as an admin's client uses it.
type Store struct {
	kv         jetstream.KeyValue
	collective string
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// BucketConfig is the control bucket's configuration. Hosts create the
// bucket with it when it is missing, so that their watch is in place
// before the first document is published.
func BucketConfig(collective string) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:      Bucket(collective),
		Description: "signet revocation list and locks of collective " + collective,
		History:     8,
	}
}

// OpenStore opens the collective's control bucket, creating it when
// missing, with n copies (replicas.Auto: 3 on a cluster, 1 otherwise).
// The bucket keeps a few old documents for inspection; hosts only ever
// apply a newer one.
func OpenStore(ctx context.Context, nc *nats.Conn, collective string, n int) (*Store, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("control: %w", err)
	}
	return OpenStoreIn(ctx, js, collective, n)
}

// OpenStoreIn is OpenStore through js: another JetStream domain's (a DR
// site's, whose hosts watch the bucket there) when js was made for it.
//
// An existing bucket is opened as it is: on a locked-down broker only
// admins may create or change streams (the broker provisions the bucket),
// and an operator who only reads it (signet lock --list) may not even ask
// for the account's JetStream limits, which creating needs.
func OpenStoreIn(ctx context.Context, js jetstream.JetStream, collective string, n int) (*Store, error) {
	kv, err := js.KeyValue(ctx, Bucket(collective))
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = replicas.KeyValue(ctx, js, BucketConfig(collective), n)
	}
	if err != nil {
		return nil, fmt.Errorf("control: open bucket %s: %w", Bucket(collective), err)
	}
	return &Store{kv: kv, collective: collective, Now: time.Now}, nil
}

// Current returns the verified current document of kind and its bucket
// revision; nil and 0 when there is none yet.
func (s *Store) Current(ctx context.Context, kind string) (*Signed, uint64, error) {
	e, err := s.kv.Get(ctx, kind)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("control: read %s: %w", kind, err)
	}
	sd, err := Open(e.Value())
	if err != nil {
		return nil, 0, fmt.Errorf("control: the %s document in the bucket does not verify: %w", kind, err)
	}
	if sd.Doc.Kind != kind || sd.Doc.Collective != s.collective {
		return nil, 0, fmt.Errorf("control: the document under %s is a %s document of collective %q", kind, sd.Doc.Kind, sd.Doc.Collective)
	}
	return sd, e.Revision(), nil
}

// UpdateOptions say how Update builds the next document.
type UpdateOptions struct {
	Kind   string
	Signer ssh.Signer
	// By is the admin's name, shown in refusals and audit records.
	By string
	// TrustBase decides whether the current document, which the next one
	// copies, was signed by an admin the caller trusts. A broker user can
	// put a document signed by their own key (hosts refuse it); copying
	// its entries would drop revocations or locks. Required.
	TrustBase func(*Signed) error
	// Edit changes the copy; it must not change Kind, Seq or Issued.
	Edit func(d *Document) error
}

// Update reads the current document, copies it with the next sequence
// number and the current time, applies Edit, signs it and stores it with
// a compare-and-set on the bucket revision, retrying when another admin
// wrote in between. It returns the stored document.
func (s *Store) Update(ctx context.Context, o UpdateOptions) (*Document, error) {
	if o.TrustBase == nil || o.Signer == nil {
		return nil, errors.New("control: Update needs a Signer and TrustBase")
	}
	for attempt := 0; ; attempt++ {
		cur, rev, err := s.base(ctx, o.Kind, o.TrustBase)
		if err != nil {
			return nil, err
		}
		next := &Document{Kind: o.Kind, Collective: s.collective, Seq: 1}
		if cur != nil {
			next.Revoked = append(next.Revoked, cur.Doc.Revoked...)
			next.Locks = append(next.Locks, cur.Doc.Locks...)
			next.Seq = cur.Doc.Seq + 1
		}
		next.Issued, next.By = s.Now().UnixMilli(), o.By
		if cur != nil && next.Issued <= cur.Doc.Issued {
			next.Issued = cur.Doc.Issued + 1
		}
		if o.Edit != nil {
			if err := o.Edit(next); err != nil {
				return nil, err
			}
		}
		frame, err := Sign(rand.Reader, o.Signer, next)
		if err != nil {
			return nil, err
		}
		if rev == 0 {
			_, err = s.kv.Create(ctx, o.Kind, frame)
		} else {
			_, err = s.kv.Update(ctx, o.Kind, frame, rev)
		}
		if err == nil {
			return next, nil
		}
		if attempt >= 4 || !(errors.Is(err, jetstream.ErrKeyExists) || isWrongSequence(err)) {
			return nil, fmt.Errorf("control: store %s: %w", o.Kind, err)
		}
	}
}

// base finds the newest document of kind in the bucket's history that
// verifies and that trust accepts, skipping any a broker user wrote since,
// and the bucket's latest revision for the compare-and-set.
func (s *Store) base(ctx context.Context, kind string, trust func(*Signed) error) (*Signed, uint64, error) {
	entries, err := s.kv.History(ctx, kind)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("control: read %s: %w", kind, err)
	}
	rev := entries[len(entries)-1].Revision()
	var skipped []string
	for i := len(entries) - 1; i >= 0; i-- {
		e := entries[i]
		if e.Operation() != jetstream.KeyValuePut {
			continue
		}
		sd, err := Open(e.Value())
		if err == nil && (sd.Doc.Kind != kind || sd.Doc.Collective != s.collective) {
			err = fmt.Errorf("a %s document of collective %q", sd.Doc.Kind, sd.Doc.Collective)
		}
		if err == nil {
			err = trust(sd)
		}
		if err == nil {
			return sd, rev, nil
		}
		skipped = append(skipped, fmt.Sprintf("revision %d: %v", e.Revision(), err))
	}
	return nil, 0, fmt.Errorf("control: no %s document in the bucket's history is one you can build on (%s); someone without an admin key wrote the bucket: lock the broker down so only admins write it, then publish again",
		kind, strings.Join(skipped, "; "))
}

func isWrongSequence(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence
}

// Put stores a frame as is, without any check. Tests use it to play a
// broker user who writes the bucket.
func (s *Store) Put(ctx context.Context, kind string, frame []byte) error {
	_, err := s.kv.Put(ctx, kind, frame)
	return err
}
