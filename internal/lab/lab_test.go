package lab_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/signetbus/signet/bus"
	"github.com/signetbus/signet/internal/cli"
	"github.com/signetbus/signet/internal/lab"
	"github.com/signetbus/signet/workflows"
)

func signet(t *testing.T, l *lab.Lab, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	env := map[string]string{"SIGNET_CONFIG": l.ClientConfig, "USER": "tester"}
	code := cli.Main(context.Background(), args, cli.IO{In: strings.NewReader(""), Out: &out, Err: &errb, Getenv: func(k string) string { return env[k] }})
	return code, out.String(), errb.String()
}

func TestLabServesSignedRequests(t *testing.T) {
	l, err := lab.Start(context.Background(), lab.Options{Dir: t.TempDir(), Hosts: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Stop()
	code, out, errs := signet(t, l, "ping")
	if code != 0 || strings.Count(out, "\tok\t") != 4 {
		t.Fatalf("ping: exit %d\n%s%s", code, out, errs)
	}
	code, out, _ = signet(t, l, "discover", "-F", "zone=a")
	if code != 0 || out != "web1\nweb4\n" {
		t.Fatalf("discover zone=a: exit %d %q", code, out)
	}
	// A stopped responder leaves the registry, and a direct request to it
	// reports it by name, at once (not waiting out the minute).
	l.StopHost("web2")
	code, out, _ = signet(t, l, "ping", "-I", "web2", "-t", "1m")
	if code != 1 || !strings.Contains(out, "web2\tnot registered") {
		t.Fatalf("stopped host: exit %d %q", code, out)
	}
	if err := l.StartHost("web2"); err != nil {
		t.Fatal(err)
	}
	code, out, _ = signet(t, l, "ping", "-I", "web2", "-t", "5s")
	if code != 0 {
		t.Fatalf("restarted host: exit %d %q", code, out)
	}
}

// TestKillHost checks that a killed responder stops answering at once but,
// unlike a stopped one, stays in the registry (it had no chance to leave),
// that StartHost brings it back, and that Stop does not report the kill as
// an error.
func TestKillHost(t *testing.T) {
	l, err := lab.Start(context.Background(), lab.Options{Dir: t.TempDir(), Hosts: 3})
	if err != nil {
		t.Fatal(err)
	}
	l.KillHost("web2")
	code, out, _ := signet(t, l, "ping", "-I", "web2", "-t", "300ms")
	if code != 1 || !strings.Contains(out, "web2\tno response") {
		t.Fatalf("killed host: exit %d %q, want exit 1 and web2 no response", code, out)
	}
	nc, err := nats.Connect(l.Broker.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	reg, err := bus.OpenRegistry(context.Background(), nc, l.Collective)
	if err != nil {
		t.Fatal(err)
	}
	regs, err := reg.List(context.Background())
	if err != nil || len(regs) != 3 || regs[1].Identity != "web2" {
		t.Fatalf("registry after the kill: %v %v, want web2 still registered", regs, err)
	}
	if err := l.StartHost("web2"); err != nil {
		t.Fatal(err)
	}
	code, out, _ = signet(t, l, "ping", "-I", "web2", "-t", "5s")
	if code != 0 || !strings.Contains(out, "web2\tok") {
		t.Fatalf("restarted host: exit %d %q", code, out)
	}
	l.KillHost("web9") // unknown: nothing to do
	if err := l.Stop(); err != nil {
		t.Fatalf("Stop after a kill: %v", err)
	}
}

// TestRestartBroker checks that the broker comes back on the same URL with
// its JetStream store (a lock taken before is still held), and that every
// responder reconnects by itself.
func TestRestartBroker(t *testing.T) {
	l, err := lab.Start(context.Background(), lab.Options{Dir: t.TempDir(), Hosts: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	url := l.Broker.ClientURL()
	store := func() workflows.Store {
		nc, err := nats.Connect(l.Broker.ClientURL())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		st, err := workflows.NewKVStore(ctx, js, workflows.KVConfig{})
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	if _, err := store().Lock(ctx, "demo/lab", workflows.Lease{Kind: "deploy", Holder: "alice", Run: "r1", Since: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := l.RestartBroker(); err != nil {
		t.Fatal(err)
	}
	if got := l.Broker.ClientURL(); got != url {
		t.Errorf("broker URL after restart: %s, want %s", got, url)
	}
	_, err = store().Lock(ctx, "demo/lab", workflows.Lease{Kind: "deploy", Holder: "bob", Run: "r2", Since: time.Now()})
	var le *workflows.LockError
	if !errors.As(err, &le) || le.Holder.Holder != "alice" {
		t.Fatalf("lock after restart: got %v, want a LockError naming alice (the store must survive)", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, out, _ := signet(t, l, "ping", "-t", "2s")
		if code == 0 && strings.Count(out, "\tok\t") == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("responders did not come back after the restart: exit %d %q", code, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
