package bus

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// TestLazyRegistryGet: a lazy registry reads one host's entry with a
// direct get, without opening the bucket, and reads it as the opened
// registry does: a forged entry, a missing one and a deleted one are no
// entry.
func TestLazyRegistryGet(t *testing.T) {
	nc, reg := testRegistry(t, "lazy", time.Minute)
	host, mallory := newSigner(t), newSigner(t)
	ctx := context.Background()
	if err := reg.Put(ctx, host, &Registration{Identity: "web1", Collective: "lazy", BootID: "b1", Started: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := reg.Put(ctx, mallory, &Registration{Identity: "web2", Collective: "lazy", Started: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := reg.Put(ctx, host, &Registration{Identity: "web4", Collective: "lazy", Started: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := reg.Delete(ctx, "web4"); err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	lazy := LazyRegistry(js, "lazy", nil)
	lazy.Verify(hostKeyMap{"web1": host.PublicKey(), "web2": host.PublicKey(), "web4": host.PublicKey()}, nil)
	if r, err := lazy.Get(ctx, "web1"); err != nil || r.BootID != "b1" {
		t.Fatalf("web1: %+v %v", r, err)
	}
	for _, id := range []string{"web2", "web3", "web4", "a.>"} {
		if r, err := lazy.Get(ctx, id); !errors.Is(err, ErrNotRegistered) {
			t.Errorf("%s: %+v %v, want ErrNotRegistered", id, r, err)
		}
	}
	if lazy.opened() {
		t.Error("Get opened the bucket")
	}
	if regs, err := lazy.List(ctx); err != nil || len(regs) != 1 || regs[0].Identity != "web1" || !lazy.opened() {
		t.Fatalf("List: %v %v", regs, err)
	}
}

// TestLazyRegistryWithoutBucket: on a broker without a registry, every use
// says ErrNoRegistry, and a client discovers its hosts by broadcast as it
// did when it opened the registry first and found none.
func TestLazyRegistryWithoutBucket(t *testing.T) {
	f := startFleet(t, 2)
	ctx := context.Background()
	js, _ := jetstream.New(f.nc)
	lazy := LazyRegistry(js, "test", nil)
	if _, err := lazy.Get(ctx, "web1"); !errors.Is(err, ErrNoRegistry) {
		t.Fatalf("Get: %v, want ErrNoRegistry", err)
	}
	if _, err := lazy.List(ctx); !errors.Is(err, ErrNoRegistry) {
		t.Fatalf("List: %v, want ErrNoRegistry", err)
	}
	c := f.client(t, f.operator, lazy)
	out, err := c.Do(ctx, Query{Agent: "test", Action: "echo", Timeout: 5 * time.Second, DiscoveryTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if got := statuses(out); got != "web1=ok web2=ok" {
		t.Fatalf("broadcast discovery: %s", got)
	}
	out, err = c.Do(ctx, Query{Agent: "test", Action: "echo", Targets: []string{"web1"}, Timeout: 5 * time.Second})
	if err != nil || statuses(out) != "web1=ok" {
		t.Fatalf("named host: %v %v", out, err)
	}
}

// TestLazyRegistryWithoutDirectGet: a registry bucket that does not allow
// direct gets (made by hand, or by an old tool) is read by opening it.
func TestLazyRegistryWithoutDirectGet(t *testing.T) {
	nc, _ := testRegistry(t, "other", time.Minute)
	js, _ := jetstream.New(nc)
	ctx := context.Background()
	b := RegistryBucket("nodirect")
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "KV_" + b, Subjects: []string{"$KV." + b + ".>"}, MaxMsgsPerSubject: 1}); err != nil {
		t.Fatal(err)
	}
	host := newSigner(t)
	raw, err := SignRegistration(host, &Registration{Identity: "web1", Collective: "nodirect", BootID: "b1", Started: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "$KV."+b+".web1", raw); err != nil {
		t.Fatal(err)
	}
	lazy := LazyRegistry(js, "nodirect", nil)
	lazy.Verify(hostKeyMap{"web1": host.PublicKey()}, nil)
	if r, err := lazy.Get(ctx, "web1"); err != nil || r.BootID != "b1" {
		t.Fatalf("web1: %+v %v", r, err)
	}
	if !lazy.opened() {
		t.Error("the bucket without direct gets was not opened")
	}
}
