package replicas_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/signetbus/signet/internal/broker"
	"github.com/signetbus/signet/internal/broker/brokertest"
	"github.com/signetbus/signet/internal/replicas"
)

func connect(t *testing.T, url string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

func bucketReplicas(t *testing.T, js jetstream.JetStream, bucket string) int {
	t.Helper()
	st, err := js.Stream(context.Background(), "KV_"+bucket)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.Config.Replicas
}

func TestAutoOnSingleBrokerIsOne(t *testing.T) {
	js := connect(t, brokertest.Start(t).ClientURL())
	ctx := context.Background()
	if _, err := replicas.KeyValue(ctx, js, jetstream.KeyValueConfig{Bucket: "b"}, replicas.Auto); err != nil {
		t.Fatal(err)
	}
	if n := bucketReplicas(t, js, "b"); n != 1 {
		t.Fatalf("replicas %d on a single broker, want 1", n)
	}
	st, err := replicas.CreateStream(ctx, js, jetstream.StreamConfig{Name: "s", Subjects: []string{"s.>"}}, replicas.Auto)
	if err != nil {
		t.Fatal(err)
	}
	if st.CachedInfo().Config.Replicas != 1 {
		t.Fatalf("stream replicas %d, want 1", st.CachedInfo().Config.Replicas)
	}
	if _, err := replicas.KeyValue(ctx, js, jetstream.KeyValueConfig{Bucket: "c"}, 3); err == nil {
		t.Fatal("3 replicas asked of a single broker: want the broker's refusal, not a silent single copy")
	}
}

// TestAutoOnClusterIsThree checks that a three-node cluster keeps three
// copies of a bucket created with Auto, scales up one created with a
// single copy, keeps the configured value, and that the bucket is written
// and reopened while one node is down.
func TestAutoOnClusterIsThree(t *testing.T) {
	c := brokertest.StartCluster(t, 3, broker.Topology{}, nil)
	js := connect(t, c.URLs())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	kv, err := replicas.KeyValue(ctx, js, jetstream.KeyValueConfig{Bucket: "auto", History: 1}, replicas.Auto)
	if err != nil {
		t.Fatal(err)
	}
	if n := bucketReplicas(t, js, "auto"); n != 3 {
		t.Fatalf("replicas %d on a three-node cluster, want 3", n)
	}
	if _, err := replicas.KeyValue(ctx, js, jetstream.KeyValueConfig{Bucket: "one"}, 1); err != nil {
		t.Fatal(err)
	}
	if n := bucketReplicas(t, js, "one"); n != 1 {
		t.Fatalf("configured 1, found %d", n)
	}
	if _, err := replicas.KeyValue(ctx, js, jetstream.KeyValueConfig{Bucket: "one"}, replicas.Auto); err != nil {
		t.Fatal(err)
	}
	if n := bucketReplicas(t, js, "one"); n != 3 {
		t.Fatalf("a single-copy bucket reopened with auto on a cluster has %d copies, want 3", n)
	}
	if _, err := kv.Put(ctx, "k", []byte("before")); err != nil {
		t.Fatal(err)
	}

	c.Kill(2)
	var again jetstream.KeyValue
	for {
		actx, acancel := context.WithTimeout(ctx, 3*time.Second)
		again, err = replicas.KeyValue(actx, js, jetstream.KeyValueConfig{Bucket: "auto", History: 1}, replicas.Auto)
		if err != nil {
			err = fmt.Errorf("reopen: %w", err)
		} else if _, err = again.Put(actx, "k", []byte("after")); err != nil {
			err = fmt.Errorf("put: %w", err)
		}
		acancel()
		if err == nil || ctx.Err() != nil {
			break
		}
		t.Logf("retry: %v", err)
		time.Sleep(200 * time.Millisecond) // a new stream leader is being elected
	}
	if err != nil {
		t.Fatalf("with one node of three down: %v", err)
	}
	if n := bucketReplicas(t, js, "auto"); n != 3 {
		t.Fatalf("reopening with a node down changed replicas to %d", n)
	}
	e, err := again.Get(ctx, "k")
	if err != nil || string(e.Value()) != "after" {
		t.Fatalf("get = %v, %v", e, err)
	}
}

func TestCheck(t *testing.T) {
	for n, ok := range map[int]bool{-1: false, 0: true, 1: true, 3: true, 5: true, 6: false} {
		if err := replicas.Check(n); (err == nil) != ok {
			t.Errorf("Check(%d) = %v", n, err)
		}
	}
}

// TestScaleUpSingleBroker: on a single broker a one-copy stream stays as
// it is, without an error (there is nowhere to place more copies); a
// missing stream is an error.
func TestScaleUpSingleBroker(t *testing.T) {
	s := brokertest.Start(t)
	js := connect(t, s.ClientURL())
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "audit", Subjects: []string{"a.>"}}); err != nil {
		t.Fatal(err)
	}
	if n, err := replicas.ScaleUp(ctx, js, "audit"); err != nil || n != 1 {
		t.Fatalf("ScaleUp on a single broker: %d, %v; want 1, nil", n, err)
	}
	if _, err := replicas.ScaleUp(ctx, js, "missing"); err == nil {
		t.Fatal("ScaleUp of a missing stream: no error")
	}
}
