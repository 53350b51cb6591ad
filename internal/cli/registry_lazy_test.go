package cli

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/signetbus/signet/internal/lab"
)

// jsCalls counts the JetStream API requests that clients send to a
// broker, by subject, from a subscription on $JS.API.> of its own.
type jsCalls struct {
	nc  *nats.Conn
	mu  sync.Mutex
	got []string
}

func countJSCalls(t *testing.T, url string) *jsCalls {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	c := &jsCalls{nc: nc}
	if _, err := nc.Subscribe("$JS.API.>", func(m *nats.Msg) {
		c.mu.Lock()
		c.got = append(c.got, m.Subject)
		c.mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return c
}

// during returns the JetStream API requests sent while fn ran.
func (c *jsCalls) during(t *testing.T, fn func()) []string {
	t.Helper()
	c.mu.Lock()
	c.got = nil
	c.mu.Unlock()
	fn()
	// Every request fn sent reached the broker before fn returned; a
	// round trip of our own puts them all ahead of it, and the handler
	// runs them in order.
	if err := c.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	sub, _ := c.nc.Subscribe(nats.NewInbox(), func(*nats.Msg) { close(done) })
	c.nc.Publish(sub.Subject, nil)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the count subscription stalled")
	}
	sub.Unsubscribe()
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.got...)
}

// A request that names its hosts reads their registry entries and nothing
// else: it neither opens the registry bucket (a stream info request) nor
// lists it (a consumer). Only a host the registry does not seem to know
// costs more: the bucket is opened to check that the registry can be
// trusted before the host is reported as not registered.
func TestNamedHostsDoNotOpenTheRegistry(t *testing.T) {
	l, err := lab.Start(context.Background(), lab.Options{Dir: t.TempDir(), Hosts: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Stop()
	env := map[string]string{"SIGNET_CONFIG": l.ClientConfig, "USER": "tester"}
	calls := countJSCalls(t, l.Broker.ClientURL())
	run := func(args ...string) (int, string, []string) {
		var out, errb bytes.Buffer
		var code int
		got := calls.during(t, func() {
			code = Main(context.Background(), args, IO{In: strings.NewReader(""), Out: &out, Err: &errb, Getenv: func(k string) string { return env[k] }})
		})
		return code, out.String() + errb.String(), got
	}
	get := func(id string) string {
		return "$JS.API.DIRECT.GET.KV_signet_registry_lab.$KV.signet_registry_lab." + id
	}

	for _, args := range [][]string{{"ping", "-I", "web1"}, {"rpc", "rpcutil", "ping", "-I", "web1", "-I", "web2"}} {
		code, out, got := run(args...)
		if code != ExitOK {
			t.Fatalf("signet %s: exit %d\n%s", strings.Join(args, " "), code, out)
		}
		var want []string
		for i, a := range args {
			if a == "-I" {
				want = append(want, get(args[i+1]))
			}
		}
		// The entries are read together, in any order.
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("signet %s sent the JetStream API requests %q, want only the entries of the hosts it names %q", strings.Join(args, " "), got, want)
		}
	}

	// A command that does not read the registry does not open it.
	for _, args := range [][]string{{"approvals"}} {
		code, out, got := run(args...)
		if code != ExitOK {
			t.Fatalf("signet %s: exit %d\n%s", strings.Join(args, " "), code, out)
		}
		if slices.ContainsFunc(got, func(s string) bool { return strings.Contains(s, "signet_registry_") }) {
			t.Errorf("signet %s sent %q: it does not need the registry", strings.Join(args, " "), got)
		}
	}

	// A host that left: its entry is gone, the registry is checked, and
	// the host is reported by name at once.
	calls.during(t, func() { l.StopHost("web3") }) // its own requests are not counted
	code, out, got := run("ping", "-I", "web3")
	if code != ExitFailed || !strings.Contains(out, "not registered") {
		t.Fatalf("ping of a stopped host: exit %d\n%s", code, out)
	}
	if !slices.Contains(got, get("web3")) || !slices.Contains(got, "$JS.API.STREAM.INFO.KV_signet_registry_lab") {
		t.Errorf("ping of a stopped host sent %q: want its entry read, then the bucket opened to check it", got)
	}

	// Discovery still lists the registry.
	code, out, got = run("ping")
	if code != ExitOK || strings.Count(out, "\tok\t") != 2 {
		t.Fatalf("ping: exit %d\n%s", code, out)
	}
	if !slices.ContainsFunc(got, func(s string) bool { return strings.HasPrefix(s, "$JS.API.CONSUMER.CREATE.KV_signet_registry_lab.") }) {
		t.Errorf("ping without -I sent %q: want the registry listed", got)
	}
}
