package buscaller_test

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/signetbus/signet/bus"
	"github.com/signetbus/signet/internal/keys"
	"github.com/signetbus/signet/internal/lab"
	"github.com/signetbus/signet/workflows"
	"github.com/signetbus/signet/workflows/buscaller"
)

// startLab starts a lab fleet (embedded broker, real responders with their
// registry entries) and returns it with a signed caller on its registry.
func startLab(t *testing.T, o lab.Options) (*lab.Lab, *buscaller.Caller) {
	t.Helper()
	ctx := context.Background()
	o.Dir = t.TempDir()
	l, err := lab.Start(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Stop() })
	nc, err := nats.Connect(l.Broker.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	op, err := keys.LoadSigner(filepath.Join(l.Dir, "operator_key"), nil)
	if err != nil {
		t.Fatal(err)
	}
	known, err := keys.LoadKnownHosts(filepath.Join(l.Dir, "known_hosts"))
	if err != nil {
		t.Fatal(err)
	}
	reg, err := bus.OpenRegistry(ctx, nc, l.Collective)
	if err != nil {
		t.Fatal(err)
	}
	c, err := bus.NewClient(bus.ClientConfig{Conn: nc, Collective: l.Collective, Signer: op, User: "tester", HostKeys: known, Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	return l, &buscaller.Caller{Client: c, Registry: reg}
}

// TestPreflightOverTheBus runs the deploy's preflight over the signed bus
// against real responders: web2 was stopped (it left the registry), web3
// was killed (its registry entry outlives it), and the inventory names
// web9, which never existed (nor is in known_hosts). The preflight names
// all three with their reasons; only the killed host, which the registry
// still lists, costs the ping's timeout.
func TestPreflightOverTheBus(t *testing.T) {
	l, c := startLab(t, lab.Options{Hosts: 4})
	ctx := context.Background()
	l.StopHost("web2")
	l.KillHost("web3")
	discovered, err := c.Discover(ctx, []string{"env=lab"})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, h := range discovered {
		ids = append(ids, h.Identity)
	}
	if !slices.Equal(ids, []string{"web1", "web3", "web4"}) {
		t.Fatalf("registry lists %v, want web1 web3 web4 (web2 left, killed web3 not yet expired)", ids)
	}
	pf, err := workflows.RunPreflight(ctx, c, "inventory test", []string{"web1", "web2", "web3", "web4", "web9"}, discovered, []string{"env=lab"}, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(pf.Answered, []string{"web1", "web4"}) {
		t.Errorf("answered %v, want web1 web4", pf.Answered)
	}
	want := map[string]string{
		"web2": "web2 is not in the fleet registry",
		"web3": "the host is not connected",
		"web9": "host key of web9 is not in known_hosts",
	}
	if len(pf.Missing) != len(want) {
		t.Fatalf("missing %v, want %v", pf.Missing, want)
	}
	for _, m := range pf.Missing {
		if !strings.Contains(m.Reason, want[m.Host]) {
			t.Errorf("missing %s: reason %q, want it to say %q", m.Host, m.Reason, want[m.Host])
		}
	}
	usable := pf.Usable(discovered)
	if len(usable) != 2 || usable[0].Identity != "web1" || usable[1].Identity != "web4" {
		t.Errorf("usable %v, want web1 web4", usable)
	}
}
