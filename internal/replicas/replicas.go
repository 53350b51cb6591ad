// Package replicas decides how many copies JetStream keeps of the buckets
// and streams signet creates (registry, run state, locks, control, audit):
// three on a cluster, one on a single broker, unless configured.
package replicas

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// Auto is the configured value that lets the broker decide: Clustered
// copies on a JetStream cluster, one on a single server.
const Auto = 0

// Clustered is how many copies Auto asks a cluster for: three survive the
// loss of any one node, and a majority (two) keeps accepting writes.
const Clustered = 3

// Max is the most copies JetStream keeps of a stream.
const Max = 5

// Check says whether n is a valid configured value: Auto (0) or 1 to Max.
func Check(n int) error {
	if n < 0 || n > Max {
		return fmt.Errorf("replicas: want 0 (auto: 3 on a cluster, 1 on a single broker) or 1 to %d, found %d", Max, n)
	}
	return nil
}

// API error codes of nats-server that Auto answers.
const (
	codeNoPeers      jetstream.ErrorCode = 10005 // no suitable peers for placement
	codeInsufficient jetstream.ErrorCode = 10023 // insufficient resources
	codeNotClustered jetstream.ErrorCode = 10074 // replicas > 1 not supported in non-clustered mode
)

func code(err error) jetstream.ErrorCode {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorCode
	}
	return 0
}

// KeyValue creates the bucket cfg describes, or updates it, with n copies
// (cfg.Replicas is ignored). With n = Auto it asks for Clustered copies
// and takes one when the broker is a single server. When a cluster cannot
// place three copies (a two-node cluster, or a node down), an existing
// bucket is opened as it is and a missing one is created with one copy;
// the next KeyValue once the cluster is whole scales it up to three.
func KeyValue(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig, n int) (jetstream.KeyValue, error) {
	if err := Check(n); err != nil {
		return nil, err
	}
	if n != Auto {
		cfg.Replicas = n
		return js.CreateOrUpdateKeyValue(ctx, cfg)
	}
	cfg.Replicas = Clustered
	kv, err := js.CreateOrUpdateKeyValue(ctx, cfg)
	switch code(err) {
	case codeNotClustered:
		cfg.Replicas = 1
		return js.CreateOrUpdateKeyValue(ctx, cfg)
	case codeNoPeers, codeInsufficient:
		if kv, oerr := js.KeyValue(ctx, cfg.Bucket); oerr == nil {
			return kv, nil
		}
		cfg.Replicas = 1
		return js.CreateOrUpdateKeyValue(ctx, cfg)
	}
	return kv, err
}

// CreateStream creates the stream cfg describes with n copies
// (cfg.Replicas is ignored), deciding Auto as KeyValue does. It never
// updates an existing stream: the caller looks it up first.
func CreateStream(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig, n int) (jetstream.Stream, error) {
	if err := Check(n); err != nil {
		return nil, err
	}
	if n != Auto {
		cfg.Replicas = n
		return js.CreateStream(ctx, cfg)
	}
	cfg.Replicas = Clustered
	st, err := js.CreateStream(ctx, cfg)
	switch code(err) {
	case codeNotClustered, codeNoPeers, codeInsufficient:
		cfg.Replicas = 1
		return js.CreateStream(ctx, cfg)
	}
	return st, err
}

// ScaleUp brings an existing stream (a bucket's KV_NAME, or the audit
// stream) that has fewer than Clustered copies up to Clustered, as Auto
// would have made it on the cluster it now runs on: a stream created on a
// single broker, or while the cluster could not place three copies, keeps
// its one copy until someone asks. It never lowers a count, and on a
// single broker or a cluster that still cannot place three copies it
// leaves the stream as it is. It returns the count the stream has.
func ScaleUp(ctx context.Context, js jetstream.JetStream, stream string) (int, error) {
	st, err := js.Stream(ctx, stream)
	if err != nil {
		return 0, fmt.Errorf("replicas: %s: %w", stream, err)
	}
	cfg := st.CachedInfo().Config
	if cfg.Replicas >= Clustered {
		return cfg.Replicas, nil
	}
	have := cfg.Replicas
	cfg.Replicas = Clustered
	_, err = js.UpdateStream(ctx, cfg)
	switch code(err) {
	case 0:
		if err != nil {
			return have, fmt.Errorf("replicas: scale %s to %d copies: %w", stream, Clustered, err)
		}
		return Clustered, nil
	case codeNotClustered, codeNoPeers, codeInsufficient:
		return have, nil
	}
	return have, fmt.Errorf("replicas: scale %s to %d copies: %w", stream, Clustered, err)
}
