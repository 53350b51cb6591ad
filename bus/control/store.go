package control

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

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
		History:     64,
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
