package cli

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/crypto/ssh"

	"github.com/signetbus/signet/bus"
	"github.com/signetbus/signet/internal/broker"
	"github.com/signetbus/signet/internal/broker/brokertest"
	"github.com/signetbus/signet/internal/keys"
)

// TestApprovalsInTheDRDomain: a bastion connected to the hub reaches a DR
// site's collective through its leafnode (nats.jetstream_domain: dr), as
// for the registry, locks and run state. The DR site's pending requests
// live in the DR domain, where its requesters put them: `signet
// approvals` lists them and `signet approve` stores the approval there,
// and nothing is created in the hub's JetStream.
func TestApprovalsInTheDRDomain(t *testing.T) {
	leafPort := brokertest.FreePort(t)
	hub, err := broker.Start(broker.Config{Port: -1, StoreDir: t.TempDir(), Name: "hub",
		Topology: broker.Topology{LeafListen: fmt.Sprintf("127.0.0.1:%d", leafPort)}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hub.Shutdown(); hub.WaitForShutdown() })
	dr, err := broker.Start(broker.Config{Port: -1, StoreDir: t.TempDir(), Name: "dr1",
		Topology: broker.Topology{LeafRemotes: []string{fmt.Sprintf("nats-leaf://127.0.0.1:%d", leafPort)}, Domain: "dr"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dr.Shutdown(); dr.WaitForShutdown() })
	for deadline := time.Now().Add(20 * time.Second); dr.NumLeafNodes() == 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the DR broker did not connect to the hub as a leafnode")
		}
	}

	dir := t.TempDir()
	signer := func(name string) ssh.Signer {
		path := filepath.Join(dir, name)
		if _, err := keys.Generate(path, name, nil); err != nil {
			t.Fatal(err)
		}
		s, err := keys.LoadSigner(path, nil)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	alice := signer("alice_key")
	signer("carol_key")

	// alice, on the DR site, submits a request for approval there.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	drc, err := nats.Connect(dr.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer drc.Close()
	store, err := bus.OpenApprovalStore(ctx, drc, "dr")
	if err != nil {
		t.Fatal(err)
	}
	id := bus.NewID()
	now := time.Now()
	sub := bus.ApprovalSubject{Kind: bus.SubjectRequest, Collective: "dr",
		Requester: ssh.FingerprintSHA256(alice.PublicKey()), RequesterName: "alice", Reason: "CHG-11 dr check",
		Expires: now.Add(time.Hour).UnixMilli(), Agent: "rpcutil", Action: "ping", Targets: []string{"dr1"}}
	if err := store.Submit(ctx, alice, &bus.PendingRequest{ID: id, Subject: sub, Created: now.UnixMilli()}); err != nil {
		t.Fatal(err)
	}

	// carol, on the bastion, is connected to the hub only.
	if err := os.WriteFile(filepath.Join(dir, "known_hosts"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "client.yaml")
	if err := os.WriteFile(cfg, []byte(`user: carol
key: carol_key
known_hosts: known_hosts
collective: prod
nats:
  urls: [`+hub.ClientURL()+`]
timeout: 5s
discovery_timeout: 1s
environments:
  dr:
    collective: dr
    nats:
      urls: [`+hub.ClientURL()+`]
      jetstream_domain: dr
`), 0o600); err != nil {
		t.Fatal(err)
	}
	signet := func(args ...string) (int, string, string) {
		t.Helper()
		var out, errb bytes.Buffer
		env := map[string]string{"SIGNET_CONFIG": cfg, "USER": "carol", "HOME": dir}
		code := Main(ctx, args, IO{In: strings.NewReader(""), Out: &out, Err: &errb, Getenv: envMap(env)})
		return code, out.String(), errb.String()
	}

	code, out, errs := signet("approvals", "--env", "dr")
	if code != 0 || !strings.Contains(out, id) || !strings.Contains(out, "CHG-11 dr check") {
		t.Fatalf("signet approvals --env dr: exit %d, want request %s listed from the DR domain\nstdout:\n%s\nstderr:\n%s", code, id, out, errs)
	}
	if code, out, errs := signet("approve", id, "--yes", "--env", "dr"); code != 0 {
		t.Fatalf("signet approve --env dr: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errs)
	}
	p, err := store.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if v := p.Valid(time.Now()); len(v) != 1 {
		t.Fatalf("the DR domain holds %d valid approvals of %s, want carol's", len(v), id)
	}

	// Nothing went to the hub's JetStream.
	hc, err := nats.Connect(hub.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer hc.Close()
	hjs, err := jetstream.New(hc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := hjs.KeyValue(ctx, bus.ApprovalBucket("dr")); err == nil {
		t.Fatalf("the hub's JetStream has a bucket %s: approvals of the DR site went to the hub", bus.ApprovalBucket("dr"))
	}
}
