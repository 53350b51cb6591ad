package provision_test

import (
	"bufio"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/signetbus/signet/bus"
	"github.com/signetbus/signet/bus/control"
	"github.com/signetbus/signet/internal/audit/ship"
	"github.com/signetbus/signet/internal/broker"
	"github.com/signetbus/signet/internal/broker/provision"
	"github.com/signetbus/signet/internal/config"
	"github.com/signetbus/signet/workflows/release"
)

// locked is a locked-down broker: TLS only, the users `signet broker
// init` writes, and its buckets provisioned by the broker's own admin.
type locked struct {
	dir   string
	srv   *server.Server
	tls   broker.TLSFiles
	users map[string]broker.User
}

const collective = "t"

func startLocked(t testing.TB) *locked { return startLockedWith(t, false) }

// startLockedWith starts the broker; existing starts it without the
// in-process provisioning, as an existing nats-server with auth.conf
// included would run, and has the admin "root" provision the buckets over
// TLS as `signet broker provision` does.
func startLockedWith(t testing.TB, existing bool) *locked {
	t.Helper()
	dir := t.TempDir()
	users, err := broker.GenerateAuth(dir, broker.AuthSpec{Collective: collective, Admins: []string{"root"},
		Clients: []string{"alice", "bob"}, Hosts: []string{"web1", "web2.example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	tf, err := broker.GenerateTLS(dir, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	// The broker's own admin creates the buckets in-process before any
	// client can connect, as `signet broker --auth` does.
	prov := func(s *server.Server) error {
		opt, err := nats.NkeyOptionFromSeed(broker.SeedPath(dir, broker.BrokerUser))
		if err != nil {
			return err
		}
		nc, err := nats.Connect("", nats.InProcessServer(s), opt)
		if err != nil {
			return err
		}
		defer nc.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return provision.Buckets(ctx, nc, provision.Options{Collective: collective, RegistryTTL: time.Minute})
	}
	cfg := broker.Config{Port: -1, StoreDir: t.TempDir(), AuthConfig: broker.AuthConfigPath(dir),
		TLSCert: tf.Cert, TLSKey: tf.Key, Provision: prov}
	if existing {
		cfg.Provision = nil
	}
	s, err := broker.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	l := &locked{dir: dir, srv: s, tls: tf, users: map[string]broker.User{}}
	for _, u := range users {
		l.users[u.Name] = u
	}
	if existing {
		root, rootv := l.connect(t, "root")
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := provision.Buckets(ctx, root, provision.Options{Collective: collective, RegistryTTL: time.Minute}); err != nil {
			t.Fatal(err)
		}
		rootv.quiet(t)
	}
	return l
}

// violations collects the broker's asynchronous errors of a connection.
type violations chan error

// connect connects as user name the way signet and signetd do (the
// config's nkey_file and ca_file), collecting the broker's errors.
func (l *locked) connect(t testing.TB, name string) (*nats.Conn, violations) {
	t.Helper()
	cfg := config.NATS{NKeyFile: broker.SeedPath(l.dir, name), CAFile: l.tls.CA}
	opts, err := cfg.AuthOptions()
	if err != nil {
		t.Fatal(err)
	}
	v := make(violations, 16)
	opts = append(opts, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		select {
		case v <- err:
		default:
		}
	}))
	nc, err := nats.Connect(l.srv.ClientURL(), opts...)
	if err != nil {
		t.Fatalf("connect as %s: %v", name, err)
	}
	t.Cleanup(nc.Close)
	return nc, v
}

// refused waits for the broker to report a permissions violation naming
// what (`Publish to "SUBJECT"` or `Subscription to "SUBJECT"`).
func (v violations) refused(t *testing.T, what string) {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case err := <-v:
			if strings.Contains(err.Error(), "Permissions Violation for "+what) {
				t.Logf("refused: %v", err)
				return
			}
			t.Logf("other error: %v", err)
		case <-timeout:
			t.Fatalf("the broker did not refuse %s", what)
		}
	}
}

// quiet checks that no permissions violation arrived.
func (v violations) quiet(t testing.TB) {
	t.Helper()
	select {
	case err := <-v:
		t.Fatalf("unexpected broker error: %v", err)
	default:
	}
}

func kv(t *testing.T, nc *nats.Conn, bucket string) jetstream.KeyValue {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	k, err := js.KeyValue(ctx, bucket)
	if err != nil {
		t.Fatalf("open bucket %s: %v", bucket, err)
	}
	return k
}

func put(k jetstream.KeyValue, key string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	_, err := k.Put(ctx, key, []byte("x"))
	return err
}

// TestLockedBrokerRefuses: each thing a role must not do is refused by the
// broker itself, not by signet's code: a stolen host or operator broker
// account gets no further than its role.
func TestLockedBrokerRefuses(t *testing.T) {
	l := startLocked(t)
	web1, web1v := l.connect(t, "web1")
	alice, alicev := l.connect(t, "alice")

	t.Run("responder publishes a request", func(t *testing.T) {
		web1.Publish(bus.AgentSubject(collective, "rpcutil"), []byte("x"))
		web1.Publish(bus.NodeSubject(collective, "web2.example.com"), []byte("x"))
		web1.Flush()
		web1v.refused(t, `Publish to "t.agent.rpcutil"`)
		web1v.refused(t, `Publish to "t.node.web2.example.com"`)
	})
	t.Run("responder writes another host's registry entry", func(t *testing.T) {
		reg := kv(t, web1, bus.RegistryBucket(collective))
		if err := put(reg, "web2.example.com"); err == nil {
			t.Fatal("put succeeded")
		}
		web1v.refused(t, `Publish to "$KV.signet_registry_t.web2.example.com"`)
		if err := put(reg, "web1"); err != nil {
			t.Fatalf("web1 cannot write its own entry: %v", err)
		}
	})
	t.Run("responder erases the registry with a rollup", func(t *testing.T) {
		// A rollup on its own key would purge every key of the bucket.
		web2, _ := l.connect(t, "web2.example.com")
		if err := put(kv(t, web2, bus.RegistryBucket(collective)), "web2.example.com"); err != nil {
			t.Fatal(err)
		}
		js, _ := jetstream.New(web1)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		m := nats.NewMsg("$KV." + bus.RegistryBucket(collective) + ".web1")
		m.Header.Set("Nats-Rollup", "all")
		m.Data = []byte("x")
		_, err := js.PublishMsg(ctx, m)
		if err == nil || !strings.Contains(err.Error(), "rollup") {
			t.Fatalf("rollup: %v, want refused", err)
		}
		t.Logf("refused: %v", err)
		root, _ := l.connect(t, "root")
		if _, err := kv(t, root, bus.RegistryBucket(collective)).Get(ctx, "web2.example.com"); err != nil {
			t.Fatalf("web2's entry after web1's rollup: %v", err)
		}
	})
	t.Run("responder writes another host's audit subject", func(t *testing.T) {
		web1.Publish(ship.Subject(collective, "web2.example.com"), []byte("x"))
		web1.Flush()
		web1v.refused(t, `Publish to "t.audit.web2.example.com"`)
	})
	t.Run("responder writes a client inbox unasked", func(t *testing.T) {
		web1.Publish(config.InboxPrefix(l.users["alice"].NKey)+".x", []byte("forged"))
		web1.Flush()
		web1v.refused(t, `Publish to "_INBOX.`)
	})
	t.Run("responder reads another host's requests", func(t *testing.T) {
		web1.Subscribe(bus.NodeSubject(collective, "web2.example.com"), func(*nats.Msg) {})
		web1.Flush()
		web1v.refused(t, `Subscription to "t.node.web2.example.com"`)
	})
	t.Run("client reads another client's replies", func(t *testing.T) {
		alice.Subscribe(config.InboxPrefix(l.users["bob"].NKey)+".>", func(*nats.Msg) {})
		alice.Flush()
		alicev.refused(t, `Subscription to "_INBOX.`+l.users["bob"].NKey+`.>"`)
		alice.Subscribe("_INBOX.>", func(*nats.Msg) {})
		alice.Flush()
		alicev.refused(t, `Subscription to "_INBOX.>"`)
		alice.Subscribe(">", func(*nats.Msg) {})
		alice.Flush()
		alicev.refused(t, `Subscription to ">"`)
	})
	t.Run("client reads requests", func(t *testing.T) {
		alice.Subscribe(bus.AgentSubject(collective, "*"), func(*nats.Msg) {})
		alice.Flush()
		alicev.refused(t, `Subscription to "t.agent.*"`)
	})
	t.Run("client writes the revocation list and locks", func(t *testing.T) {
		ctl := kv(t, alice, control.Bucket(collective))
		for _, kind := range []string{control.KindRevocations, control.KindLocks} {
			if err := put(ctl, kind); err == nil {
				t.Fatalf("put %s succeeded", kind)
			}
			alicev.refused(t, `Publish to "$KV.signet_control_t.`+kind+`"`)
		}
	})
	t.Run("client writes a registry entry", func(t *testing.T) {
		if err := put(kv(t, alice, bus.RegistryBucket(collective)), "web1"); err == nil {
			t.Fatal("put succeeded")
		}
		alicev.refused(t, `Publish to "$KV.signet_registry_t.web1"`)
	})
	t.Run("client changes a stream", func(t *testing.T) {
		js, _ := jetstream.New(alice)
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		js.UpdateStream(ctx, jetstream.StreamConfig{Name: "KV_" + bus.RegistryBucket(collective), Subjects: []string{"_INBOX.>"}})
		alicev.refused(t, `Publish to "$JS.API.STREAM.UPDATE.KV_signet_registry_t"`)
	})
	t.Run("client consumes a bucket it writes", func(t *testing.T) {
		// A push consumer's deliver subject is not checked against its
		// creator's permissions: on a stream alice writes, it would let
		// her publish any bytes anywhere (into bob's inbox).
		js, _ := jetstream.New(alice)
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		st, err := js.Stream(ctx, "KV_"+broker.RunsBucket)
		if err != nil {
			t.Fatal(err)
		}
		st.CreateOrUpdatePushConsumer(ctx, jetstream.ConsumerConfig{DeliverSubject: config.InboxPrefix(l.users["bob"].NKey) + ".x", AckPolicy: jetstream.AckNonePolicy})
		alicev.refused(t, `Publish to "$JS.API.CONSUMER.CREATE.KV_signet_runs`)
	})
	t.Run("admin writes the locks", func(t *testing.T) {
		root, rootv := l.connect(t, "root")
		if err := put(kv(t, root, control.Bucket(collective)), control.KindLocks); err != nil {
			t.Fatal(err)
		}
		rootv.quiet(t)
	})
	t.Run("unauthenticated", func(t *testing.T) {
		_, err := nats.Connect(l.srv.ClientURL(), nats.RootCAs(l.tls.CA), nats.MaxReconnects(0))
		if err == nil || !strings.Contains(err.Error(), "Authorization Violation") {
			t.Fatalf("connect without a user: %v, want an authorization violation", err)
		}
		t.Log(err)
	})
	t.Run("unknown nkey", func(t *testing.T) {
		dir := t.TempDir()
		if _, err := broker.GenerateAuth(dir, broker.AuthSpec{Collective: collective, Clients: []string{"alice"}}); err != nil {
			t.Fatal(err)
		}
		opts, _ := config.NATS{NKeyFile: broker.SeedPath(dir, "alice"), CAFile: l.tls.CA}.AuthOptions()
		_, err := nats.Connect(l.srv.ClientURL(), append(opts, nats.MaxReconnects(0))...)
		if err == nil || !strings.Contains(err.Error(), "Authorization Violation") {
			t.Fatalf("connect with a key the broker does not know: %v", err)
		}
	})
	t.Run("plaintext", func(t *testing.T) {
		c, err := net.Dial("tcp", l.srv.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		r := bufio.NewReader(c)
		info, _ := r.ReadString('\n')
		if !strings.Contains(info, `"tls_required":true`) {
			t.Fatalf("INFO does not require TLS: %s", info)
		}
		c.Write([]byte("CONNECT {\"verbose\":false}\r\nPING\r\n"))
		line, err := r.ReadString('\n')
		if strings.HasPrefix(line, "PONG") {
			t.Fatal("the broker answered a plaintext client")
		}
		t.Logf("plaintext client: %q %v", line, err)
	})
}

// TestSeedFilesArePrivate: every nkey seed and the TLS keys are 0600, and
// signet refuses to use a seed others can read.
func TestSeedFilesArePrivate(t *testing.T) {
	l := startLocked(t)
	seeds, _ := filepath.Glob(filepath.Join(l.dir, "users", "*.nk"))
	keys, _ := filepath.Glob(filepath.Join(l.dir, "tls", "*key.pem"))
	if len(seeds) != 6 || len(keys) != 2 {
		t.Fatalf("%d seeds, %d keys", len(seeds), len(keys))
	}
	for _, f := range append(seeds, keys...) {
		st, err := os.Stat(f)
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v (%v), want 0600", f, st.Mode().Perm(), err)
		}
	}
	seed := broker.SeedPath(l.dir, "alice")
	os.Chmod(seed, 0o644)
	_, err := config.NATS{NKeyFile: seed}.AuthOptions()
	if err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("a readable seed: %v", err)
	}
}

// TestBucketNamesAgree: the broker names the buckets and stream below the
// packages that own them; they must agree.
func TestBucketNamesAgree(t *testing.T) {
	u := broker.User{Name: "web1", Role: broker.RoleResponder, NKey: "UX"}
	p := strings.Join(broker.PermissionsFor(collective, u).Publish, " ")
	for _, want := range []string{"$KV." + bus.RegistryBucket(collective) + ".web1", control.Bucket(collective), ship.Stream(collective), ship.Subject(collective, "web1")} {
		if !strings.Contains(p, want) {
			t.Errorf("responder permissions do not name %s", want)
		}
	}
	c := strings.Join(broker.PermissionsFor(collective, broker.User{Name: "alice", Role: broker.RoleClient, NKey: "UY"}).Publish, " ")
	for _, want := range []string{"$KV.signet_runs.>", "$KV.signet_locks.>", "$KV." + release.RecordsBucket + ".>", "$KV." + bus.ApprovalBucket(collective) + ".>"} {
		if !strings.Contains(c, want) {
			t.Errorf("client permissions do not name %s", want)
		}
	}
	if err := bus.CheckCollective("a.b"); err == nil {
		t.Fatal("collective grammar changed")
	}
	if _, err := broker.GenerateAuth(t.TempDir(), broker.AuthSpec{Collective: "a.b"}); !errors.Is(err, broker.ErrAuth) {
		t.Fatalf("a collective bus refuses: %v", err)
	}
}
