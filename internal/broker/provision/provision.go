// Package provision creates, as a broker admin, the JetStream buckets and
// streams a collective uses, so that on a locked-down broker (see
// internal/broker's PermissionsFor) hosts and operators only open them:
// neither may create or change a stream there.
package provision

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/signetbus/signet/bus"
	"github.com/signetbus/signet/bus/control"
	"github.com/signetbus/signet/internal/audit/ship"
	"github.com/signetbus/signet/internal/broker"
	"github.com/signetbus/signet/internal/replicas"
	"github.com/signetbus/signet/workflows"
	"github.com/signetbus/signet/workflows/release"
)

// Options say how to make the buckets.
type Options struct {
	Collective string
	// RegistryTTL is the registry bucket's TTL; it must equal the hosts'
	// registry_ttl (default 90s), or hosts cannot register.
	RegistryTTL time.Duration
	// LockTTL is the deploy locks bucket's TTL (default 2m, the client's
	// default).
	LockTTL time.Duration
}

// Buckets creates (or brings up to date) the registry, control and
// workflow buckets and the audit stream of a collective, over nc, which
// must be an admin's connection. On a cluster, a bucket or an audit
// stream with fewer than three copies is scaled up to three.
func Buckets(ctx context.Context, nc *nats.Conn, o Options) error {
	if err := bus.CheckCollective(o.Collective); err != nil {
		return err
	}
	if o.RegistryTTL <= 0 {
		o.RegistryTTL = 90 * time.Second
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("provision: %w", err)
	}
	if _, err := replicas.KeyValue(ctx, js, bus.RegistryConfig(o.Collective, o.RegistryTTL), replicas.Auto); err != nil {
		return fmt.Errorf("provision: registry bucket: %w", err)
	}
	if err := noRollup(ctx, js, "KV_"+bus.RegistryBucket(o.Collective)); err != nil {
		return err
	}
	if _, err := replicas.KeyValue(ctx, js, control.BucketConfig(o.Collective), replicas.Auto); err != nil {
		return fmt.Errorf("provision: control bucket: %w", err)
	}
	if _, err := ship.EnsureStream(ctx, js, o.Collective, replicas.Auto); err != nil {
		return fmt.Errorf("provision: %w", err)
	}
	// An audit stream made with one copy (on a single broker that grew
	// into a cluster) gets three, as the buckets above do.
	if _, err := replicas.ScaleUp(ctx, js, ship.Stream(o.Collective)); err != nil {
		return fmt.Errorf("provision: audit stream: %w", err)
	}
	if _, err := workflows.NewKVStore(ctx, js, workflows.KVConfig{LockTTL: o.LockTTL}); err != nil {
		return fmt.Errorf("provision: %w", err)
	}
	if _, err := replicas.KeyValue(ctx, js, bus.ApprovalBucketConfig(o.Collective), replicas.Auto); err != nil {
		return fmt.Errorf("provision: approvals bucket: %w", err)
	}
	if _, err := replicas.KeyValue(ctx, js, release.RecordsBucketConfig(), replicas.Auto); err != nil {
		return fmt.Errorf("provision: release records bucket: %w", err)
	}
	// The buckets operators write, and the control bucket, are read by
	// operators with message gets only (broker.PermissionsFor).
	for _, b := range []string{bus.ApprovalBucket(o.Collective), broker.RunsBucket, broker.LocksBucket, release.RecordsBucket, control.Bucket(o.Collective)} {
		if err := noDirect(ctx, js, "KV_"+b); err != nil {
			return err
		}
	}
	return nil
}

// noDirect turns off direct gets on a stream. A direct get answers with
// the raw message on the request's reply subject, which nats-server does
// not check against the requester's permissions: on a bucket operators
// write, one could have the broker publish bytes of their choosing on any
// subject (into another operator's inbox, the control bucket, a host's
// audit subject). Without direct gets nats.go reads keys with message
// gets, whose answer is the broker's JSON.
func noDirect(ctx context.Context, js jetstream.JetStream, stream string) error {
	st, err := js.Stream(ctx, stream)
	if err != nil {
		return fmt.Errorf("provision: %s: %w", stream, err)
	}
	cfg := st.CachedInfo().Config
	if !cfg.AllowDirect {
		return nil
	}
	cfg.AllowDirect = false
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		return fmt.Errorf("provision: %s: turn off direct gets: %w", stream, err)
	}
	return nil
}

// noRollup turns off rollups on a stream. A key-value bucket allows them
// (kv.Purge is one), and a rollup message purges the whole stream, not
// only the subject it is published on: a host allowed to write its own
// registry key could erase every other host's entry with one
// "Nats-Rollup: all" header. The registry never purges (hosts delete
// their entry), so it does without.
func noRollup(ctx context.Context, js jetstream.JetStream, stream string) error {
	st, err := js.Stream(ctx, stream)
	if err != nil {
		return fmt.Errorf("provision: %s: %w", stream, err)
	}
	cfg := st.CachedInfo().Config
	if !cfg.AllowRollup {
		return nil
	}
	cfg.AllowRollup = false
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		return fmt.Errorf("provision: %s: turn off rollups: %w", stream, err)
	}
	return nil
}
