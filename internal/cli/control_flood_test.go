package cli

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/crypto/ssh"

	"github.com/signetbus/signet/bus"
	"github.com/signetbus/signet/bus/control"
	"github.com/signetbus/signet/internal/keys"
	"github.com/signetbus/signet/internal/lab"
)

// floodLab is a lab whose broker a test also writes as a plain broker
// user: on an open broker directly, on a locked-down one through the
// reply-subject gap (internal/broker/provision TestReplySubjectGap).
type floodLab struct {
	l  *lab.Lab
	kv jetstream.KeyValue
	c  *bus.Client // the operator (an admin), to read the hosts' state
}

func startFloodLab(t *testing.T) *floodLab {
	t.Helper()
	l, err := lab.Start(context.Background(), lab.Options{Dir: t.TempDir(), Hosts: 3})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Stop() })
	nc, err := nats.Connect(l.Broker.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	// The hosts create the bucket when they start watching it.
	var kv jetstream.KeyValue
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if kv, err = js.KeyValue(context.Background(), control.Bucket(l.Collective)); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
	}
	signer, err := keys.LoadSigner(filepath.Join(l.Dir, "operator_key"), nil)
	if err != nil {
		t.Fatal(err)
	}
	known, err := keys.LoadKnownHosts(filepath.Join(l.Dir, "known_hosts"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := bus.NewClient(bus.ClientConfig{Conn: nc, Collective: l.Collective, Signer: signer, User: "probe", HostKeys: known})
	if err != nil {
		t.Fatal(err)
	}
	return &floodLab{l: l, kv: kv, c: c}
}

func (f *floodLab) signet(t *testing.T, args ...string) (code int, out, errs string) {
	t.Helper()
	var o, e strings.Builder
	env := map[string]string{"SIGNET_CONFIG": f.l.ClientConfig, "USER": "operator"}
	code = Main(context.Background(), args, IO{In: strings.NewReader(""), Out: &o, Err: &e, Getenv: envMap(env)})
	return code, o.String(), e.String()
}

// flood writes n junk revisions under key.
func (f *floodLab) flood(t *testing.T, key string, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		if _, err := f.kv.Put(context.Background(), key, []byte(fmt.Sprintf(`{"junk":%d}`, i))); err != nil {
			t.Fatal(err)
		}
	}
}

// flooder writes junk under key all the time, in bursts of core NATS
// publishes to the key's stream subject (what the reply-subject gap
// lets any user do), until the returned stop is called; it returns once
// it has buried what the key held (2*pastHistory revisions). stop
// returns how many were sent.
func (f *floodLab) flooder(t *testing.T, key string) (stop func() int) {
	t.Helper()
	nc, err := nats.Connect(f.l.Broker.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	subject := "$KV." + control.Bucket(f.l.Collective) + "." + key
	done := make(chan struct{})
	var wg sync.WaitGroup
	var n int
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer nc.Close()
		for {
			select {
			case <-done:
				return
			default:
			}
			for range 10 {
				_ = nc.Publish(subject, []byte(fmt.Sprintf(`{"junk":%d}`, n)))
				n++
			}
			_ = nc.Flush()
			time.Sleep(2 * time.Millisecond) // about 5000 a second: starve the compare-and-set, not the broker
		}
	}()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if h, err := f.kv.History(context.Background(), key); err == nil && len(h) > 0 && h[len(h)-1].Revision() > 2*pastHistory {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the flooder wrote nothing")
		}
	}
	return func() int { close(done); wg.Wait(); return n }
}

// refusing waits until every host refuses a ping with code, and returns
// how long that took from start.
func (f *floodLab) refusing(t *testing.T, code string, start time.Time) time.Duration {
	t.Helper()
	var targets []string
	for _, h := range f.l.Hosts {
		targets = append(targets, h.Identity)
	}
	for deadline := time.Now().Add(20 * time.Second); ; {
		out, err := f.c.Do(context.Background(), bus.Query{Agent: "rpcutil", Action: "ping", Targets: targets, Timeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, r := range out.Results {
			if r.Reply != nil && r.Reply.Code == code {
				n++
			}
		}
		if n == len(targets) {
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d hosts refuse with %s after 20s", n, len(targets), code)
		}
	}
}

// hostDocs returns each host's applied document of kind.
func (f *floodLab) hostDocs(t *testing.T, kind string) map[string]*control.Document {
	t.Helper()
	var targets []string
	for _, h := range f.l.Hosts {
		targets = append(targets, h.Identity)
	}
	states, _, err := control.AskHosts(f.c, bus.Query{Targets: targets, Timeout: 5 * time.Second})(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*control.Document{}
	for _, hs := range states {
		if sd, err := control.Open(hs.Frames[kind]); err == nil {
			out[hs.Identity] = sd.Doc
		}
	}
	return out
}

func loadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	return strings.Join(strings.Fields(string(b))[:3], " ")
}

// pastHistory is more junk revisions than the control bucket keeps.
const pastHistory = 70

// TestLockUnderFlood: a broker user writes junk under the locks key: 20
// revisions (the bucket keeps 64 now, 8 before), then more than it keeps,
// then purges the key. Each time `signet lock` (and unlock) still
// succeeds, says where its base came from, keeps the earlier locks, and
// every host refuses within seconds.
func TestLockUnderFlood(t *testing.T) {
	f := startFloodLab(t)
	if code, out, errs := f.signet(t, "lock", "--app", "billing", "--reason", "maintenance"); code != 0 || out != "L1\n" {
		t.Fatalf("lock --app: exit %d %q %s", code, out, errs)
	}
	f.flood(t, control.KindLocks, 20)
	if code, out, errs := f.signet(t, "lock", "--fact", "env=none", "--reason", "audit"); code != 0 || out != "L2\n" {
		t.Fatalf("lock after 20 junk revisions: exit %d %q %s", code, out, errs)
	}
	f.flood(t, control.KindLocks, pastHistory)
	start := time.Now()
	code, out, errs := f.signet(t, "lock", "--all", "--reason", "incident 7")
	if code != 0 || out != "L3\n" {
		t.Fatalf("lock --all under a flood: exit %d %q %s", code, out, errs)
	}
	for _, want := range []string{"is flooded", "built on the hosts' seq 2", "held by 3 of 3 answering hosts", "locked all actions (seq 3, 3 locks active)"} {
		if !strings.Contains(errs, want) {
			t.Fatalf("lock --all does not say %q:\n%s", want, errs)
		}
	}
	took := f.refusing(t, control.CodeLocked, start)
	t.Logf("lock --all after %d junk revisions: every host refuses %s after the command started (load %s); stderr:\n%s", pastHistory, took.Round(time.Millisecond), loadAvg(), errs)
	for id, d := range f.hostDocs(t, control.KindLocks) {
		if !slices.Equal(d.LockIDs(), []string{"L1", "L2", "L3"}) {
			t.Fatalf("%s holds locks %v, want L1 L2 L3", id, d.LockIDs())
		}
	}
	f.flood(t, control.KindLocks, pastHistory)
	if code, out, errs := f.signet(t, "lock", "--list"); code != 0 || !strings.Contains(out, "L3\tall actions\toperator\t") || !strings.Contains(errs, "flooded") {
		t.Fatalf("lock --list under a flood: exit %d %q %s", code, out, errs)
	}
	if code, out, errs := f.signet(t, "unlock", "L3"); code != 0 || !strings.Contains(out, "unlocked (seq 4, 2 locks active)") {
		t.Fatalf("unlock under a flood: exit %d %q %s", code, out, errs)
	}
	f.refusing(t, "", time.Now()) // pings answered again

	// A broker user purges the key: the next lock must not start again at
	// seq 1, which every host would refuse as a rollback.
	if err := f.kv.Purge(context.Background(), control.KindLocks); err != nil {
		t.Fatal(err)
	}
	code, out, errs = f.signet(t, "lock", "--agent", "rpcutil", "--reason", "after a purge")
	if code != 0 || out != "L5\n" || !strings.Contains(errs, "built on the hosts' seq 4") {
		t.Fatalf("lock after a purge: exit %d %q %s", code, out, errs)
	}
	f.refusing(t, control.CodeLocked, time.Now())
}

// TestRevokeUnderFlood: after a flood of the revocations key, a second
// revocation keeps the first: no entry is dropped.
func TestRevokeUnderFlood(t *testing.T) {
	f := startFloodLab(t)
	var fps []string
	for i := range 2 {
		pub, _, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		sp, err := ssh.NewPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		fps = append(fps, ssh.FingerprintSHA256(sp))
		if code, out, errs := f.signet(t, "revoke", fps[i], "--reason", "stolen laptop"); code != 0 {
			t.Fatalf("revoke: exit %d %q %s", code, out, errs)
		}
		f.flood(t, control.KindRevocations, pastHistory)
	}
	eventuallyFlood(t, func() error {
		docs := f.hostDocs(t, control.KindRevocations)
		if len(docs) != len(f.l.Hosts) {
			return fmt.Errorf("%d hosts have a revocation list", len(docs))
		}
		for id, d := range docs {
			if d.Seq != 2 || len(d.Revoked) != 2 || d.Revoked[0].Key != fps[0] || d.Revoked[1].Key != fps[1] {
				return fmt.Errorf("%s holds %+v", id, d)
			}
		}
		return nil
	})
	// The lab's operator revokes itself under a flood: every host refuses it.
	f.flood(t, control.KindRevocations, pastHistory)
	start := time.Now()
	if code, out, errs := f.signet(t, "revoke", filepath.Join(f.l.Dir, "operator_key.pub"), "--reason", "key left on a train"); code != 0 {
		t.Fatalf("revoke under a flood: exit %d %q %s", code, out, errs)
	}
	took := f.refusing(t, control.CodeRevoked, start)
	t.Logf("revoke after %d junk revisions: every host refuses %s after the command started (load %s)", pastHistory, took.Round(time.Millisecond), loadAvg())
}

// TestLockUnderContinuousFlood: a broker user writes junk under the locks
// key all the time while the admin locks; the command must succeed (before,
// every compare-and-set failed) and the lock reach every host. The time is
// logged against a lock on a quiet bucket.
func TestLockUnderContinuousFlood(t *testing.T) {
	f := startFloodLab(t)
	start := time.Now()
	if code, out, errs := f.signet(t, "lock", "--all", "--reason", "quiet"); code != 0 || out != "L1\n" {
		t.Fatalf("lock: exit %d %q %s", code, out, errs)
	}
	quiet := f.refusing(t, control.CodeLocked, start)
	if code, out, errs := f.signet(t, "unlock", "L1"); code != 0 {
		t.Fatalf("unlock: exit %d %q %s", code, out, errs)
	}
	f.refusing(t, "", time.Now())

	stop := f.flooder(t, control.KindLocks)
	start = time.Now()
	code, out, errs := f.signet(t, "lock", "--all", "--reason", "incident 9")
	if code != 0 || out != "L3\n" {
		stop()
		t.Fatalf("lock --all under a continuous flood: exit %d %q %s", code, out, errs)
	}
	command := time.Since(start)
	// The flood stops when the command returns: a flood faster than the
	// hosts read their watch (likely under -race on a loaded machine)
	// delays every document behind it, which is no part of this test.
	junk := stop()
	flooded := f.refusing(t, control.CodeLocked, start)
	t.Logf("lock --all until every host of %d refuses: quiet bucket %s; under a continuous flood %s (the command %s, %d junk writes); load %s; stderr:\n%s",
		len(f.l.Hosts), quiet.Round(time.Millisecond), flooded.Round(time.Millisecond), command.Round(time.Millisecond), junk, loadAvg(), errs)
}

func eventuallyFlood(t *testing.T, fn func() error) {
	t.Helper()
	var err error
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if err = fn(); err == nil {
			return
		}
	}
	t.Fatal(err)
}
