package bus

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// TestDirectRequestToUnregisteredHost: a request sent directly (-I) to a
// host that the fleet registry does not know fails at once for that host,
// naming it, instead of waiting out the timeout; the hosts the registry
// knows still run it. On the old code web9 waited the whole timeout and
// came back as "no response".
func TestDirectRequestToUnregisteredHost(t *testing.T) {
	f := startFleet(t, 2)
	ctx := context.Background()
	reg, err := CreateRegistry(ctx, f.nc, "test", time.Minute, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"web1", "web2"} {
		n := f.resp[id].cfg.Node()
		if err := reg.Put(ctx, f.resp[id].cfg.HostKey, &Registration{Identity: id, Collective: "test", Facts: n.Facts, Agents: n.Agents, Started: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	f.keys["web9"] = newSigner(t).PublicKey() // in known_hosts, never registered
	c := f.client(t, f.operator, reg)
	start := time.Now()
	out, err := c.Do(ctx, Query{Agent: "test", Action: "echo", Targets: []string{"web1", "web9"}, Timeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if got := statuses(out); got != "web1=ok web9=not registered" {
		t.Fatalf("got %s", got)
	}
	if e := out.Results[1].Error; !strings.Contains(e, "web9 is not in the fleet registry") || !strings.Contains(e, "not sent") {
		t.Fatalf("error %q does not name the host and say the request was not sent", e)
	}
	// A generous bound, not a measure: the old code waited out all 20 s.
	if el := time.Since(start); el > 10*time.Second {
		t.Fatalf("took %s: the client waited for a host the registry does not know", el)
	}
	if ok, failed, nr := out.Counts(); ok != 1 || failed != 1 || nr != 0 {
		t.Fatalf("counts ok=%d failed=%d no-response=%d, want the unregistered host counted failed", ok, failed, nr)
	}
}

// TestDirectRequestRegistryUntrusted: when the registry cannot be taken
// for the fleet (just created again after the broker lost its state, so
// hosts are still registering), a direct request is sent to every named
// host as before: refusing would turn a broker restart into failures.
func TestDirectRequestRegistryUntrusted(t *testing.T) {
	f := startFleet(t, 2)
	ctx := context.Background()
	reg, err := CreateRegistry(ctx, f.nc, "test", time.Minute, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Empty and young: the registry is being refilled.
	c := f.client(t, f.operator, reg)
	out, err := c.Do(ctx, Query{Agent: "test", Action: "echo", Targets: []string{"web1", "web2"}, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if got := statuses(out); got != "web1=ok web2=ok" {
		t.Fatalf("got %s", got)
	}
}

// TestRegistryGetVerifies: Get (the unknown-host check, the reboot
// step's boot id) reads an entry as List does: one signed by the host
// is returned, one written by someone else counts as no entry, so the
// broker can neither fake a host's presence nor a new boot.
func TestRegistryGetVerifies(t *testing.T) {
	_, reg := testRegistry(t, "get", time.Minute)
	host, mallory := newSigner(t), newSigner(t)
	reg.Verify(hostKeyMap{"web1": host.PublicKey(), "web2": host.PublicKey()}, nil)
	ctx := context.Background()
	if err := reg.Put(ctx, host, &Registration{Identity: "web1", Collective: "get", BootID: "b1", Started: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := reg.Put(ctx, mallory, &Registration{Identity: "web2", Collective: "get", BootID: "b2", Started: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if r, err := reg.Get(ctx, "web1"); err != nil || r.BootID != "b1" {
		t.Fatalf("web1: %+v %v", r, err)
	}
	if r, err := reg.Get(ctx, "web2"); !errors.Is(err, ErrNotRegistered) {
		t.Fatalf("web2 signed by another key: %+v %v, want ErrNotRegistered", r, err)
	}
	if _, err := reg.Get(ctx, "web3"); !errors.Is(err, ErrNotRegistered) {
		t.Fatalf("web3: %v", err)
	}
}

type hostKeyMap map[string]ssh.PublicKey

func (m hostKeyMap) Lookup(id string) (ssh.PublicKey, bool) { k, ok := m[id]; return k, ok }
