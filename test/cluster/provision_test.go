package cluster

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/signetbus/signet/bus"
	"github.com/signetbus/signet/internal/audit/ship"
	"github.com/signetbus/signet/internal/broker"
	"github.com/signetbus/signet/internal/broker/brokertest"
	"github.com/signetbus/signet/internal/broker/provision"
	"github.com/signetbus/signet/internal/replicas"
)

// TestProvisionScalesAuditStream: an audit stream and a registry with one
// copy each (made on a single broker, or while the cluster could not
// place three) are brought to three copies on a three-node cluster by
// provisioning (`signet broker provision`, and the locked-down broker's
// own), with the audit records they hold kept.
func TestProvisionScalesAuditStream(t *testing.T) {
	c := brokertest.StartCluster(t, 3, broker.Topology{}, nil)
	nc := operatorConn(t, c.URLs())
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := ship.EnsureStream(ctx, js, "prod", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := replicas.KeyValue(ctx, js, bus.RegistryConfig("prod", 90*time.Second), 1); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		if _, err := js.Publish(ctx, ship.Subject("prod", fmt.Sprintf("web%03d", i%5)), []byte(fmt.Sprintf(`{"n":%d}`, i))); err != nil {
			t.Fatal(err)
		}
	}
	streamReplicas := func(name string) (int, uint64) {
		t.Helper()
		st, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		info, err := st.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return info.Config.Replicas, info.State.Msgs
	}
	if n, _ := streamReplicas(ship.Stream("prod")); n != 1 {
		t.Fatalf("audit stream starts with %d copies, want 1", n)
	}
	if err := provision.Buckets(ctx, nc, provision.Options{Collective: "prod"}); err != nil {
		t.Fatal(err)
	}
	if n, msgs := streamReplicas(ship.Stream("prod")); n != 3 || msgs != 20 {
		t.Errorf("audit stream after provisioning: %d copies, %d records; want 3 and 20", n, msgs)
	}
	if n, _ := streamReplicas("KV_" + bus.RegistryBucket("prod")); n != 3 {
		t.Errorf("registry after provisioning: %d copies, want 3", n)
	}
}
