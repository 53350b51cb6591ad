package workflows

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/crypto/ssh"

	"github.com/signetbus/signet/internal/broker"
	"github.com/signetbus/signet/internal/keys/keytest"
)

var testSigner = keytest.Signer

// hookCaller answers every call OK and runs hook (if set) before
// answering; it counts the calls.
type hookCaller struct {
	mu    sync.Mutex
	calls []string
	hook  func(c Call, n int)
}

func (h *hookCaller) Call(_ context.Context, c Call) ([]Result, error) {
	h.mu.Lock()
	h.calls = append(h.calls, strings.Join(c.Hosts, ",")+" "+c.Agent+"."+c.Action)
	n := len(h.calls)
	h.mu.Unlock()
	if h.hook != nil {
		h.hook(c, n)
	}
	var out []Result
	for _, host := range c.Hosts {
		out = append(out, Result{Host: host, OK: true})
	}
	return out, nil
}

func (h *hookCaller) Discover(context.Context, []string) ([]Host, error) { return nil, nil }

func (h *hookCaller) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.calls)
}

func threeSteps() *Workflow {
	return &Workflow{Version: 1, Name: "deploy", Steps: []Step{
		{Name: "one", Agent: "service", Action: "stop"},
		{Name: "two", Agent: "package", Action: "update"},
		{Name: "three", Agent: "service", Action: "start"},
	}}
}

func deployState() *RunState {
	st := NewRunState("deploy", [][]string{{"web1"}, {"web2"}}, map[string]string{"version": "1.4.2", "env": "prod", "app": "middleware"})
	st.App, st.Env, st.Version, st.User = "middleware", "prod", "1.4.2", "alice@bastion"
	return st
}

// TestRunStateSigned: a broker user rewrites the stored state of a run
// (another version, other hosts); Load must refuse it. Before the state
// was signed, Load returned the attacker's version and hosts.
func TestRunStateSigned(t *testing.T) {
	ctx := context.Background()
	alice := testSigner(t)
	s, js := kvStoreWith(t, KVConfig{Signer: alice, LockTTL: 2 * time.Second})
	st := deployState()
	if err := s.Save(ctx, st); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(ctx, st.ID); err != nil {
		t.Fatalf("load own state: %v", err)
	}
	kv, err := js.KeyValue(ctx, "signet_runs")
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(ctx, st.ID)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("tampered", func(t *testing.T) {
		evil := bytes.Replace(e.Value(), []byte("1.4.2"), []byte("6.6.6"), -1)
		if bytes.Equal(evil, e.Value()) {
			t.Fatal("test did not change the state")
		}
		if _, err := kv.Put(ctx, st.ID, evil); err != nil {
			t.Fatal(err)
		}
		_, err := s.Load(ctx, st.ID)
		if !errors.Is(err, ErrStateSignature) {
			t.Fatalf("load of a tampered state: %v, want ErrStateSignature", err)
		}
		if !strings.Contains(err.Error(), "changed after it was written") {
			t.Errorf("error %q does not say the state was changed", err)
		}
	})

	t.Run("plain json as before", func(t *testing.T) {
		st2 := *st
		st2.Version = "6.6.6"
		b, _ := json.Marshal(&st2)
		if _, err := kv.Put(ctx, st.ID, b); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Load(ctx, st.ID); !errors.Is(err, ErrStateUnsigned) {
			t.Fatalf("load of an unsigned state: %v, want ErrStateUnsigned", err)
		}
	})

	t.Run("no hosts", func(t *testing.T) {
		empty := &RunState{ID: st.ID, Workflow: "deploy", App: "middleware", Env: "prod", Version: "1.4.2", Batches: [][]string{{"web1"}}, Status: StatusFailed}
		b, err := SealRunState(alice, empty)
		if err != nil {
			t.Fatal(err)
		}
		kv.Put(ctx, st.ID, b)
		_, err = s.Load(ctx, st.ID)
		if !errors.Is(err, ErrStateInvalid) {
			t.Fatalf("load of a state without host records: %v, want ErrStateInvalid", err)
		}
		empty.Batches = nil
		b, _ = SealRunState(alice, empty)
		kv.Put(ctx, st.ID, b)
		if _, err := s.Load(ctx, st.ID); !errors.Is(err, ErrStateInvalid) || !strings.Contains(err.Error(), "no hosts") {
			t.Fatalf("load of a state with no hosts: %v, want ErrStateInvalid saying no hosts", err)
		}
	})

	t.Run("bad fields", func(t *testing.T) {
		for name, mut := range map[string]func(*RunState){
			"version":   func(x *RunState) { x.Version, x.Vars["version"] = "1.0; rm -rf /", "1.0; rm -rf /" },
			"var drift": func(x *RunState) { x.Vars["version"] = "9.9.9" },
			"host":      func(x *RunState) { x.Batches[0][0] = "web 1"; x.Hosts["web 1"] = &HostState{} },
			"app":       func(x *RunState) { x.App = "../etc" },
			"reserved":  func(x *RunState) { x.Vars["identity"] = "db1" },
			"stray":     func(x *RunState) { x.Hosts["db1"] = &HostState{} },
		} {
			x := deployState()
			x.ID = st.ID
			mut(x)
			b, _ := SealRunState(alice, x)
			kv.Put(ctx, st.ID, b)
			if _, err := s.Load(ctx, st.ID); !errors.Is(err, ErrStateInvalid) {
				t.Errorf("%s: load: %v, want ErrStateInvalid", name, err)
			}
		}
	})

	t.Run("another run's state", func(t *testing.T) {
		other := deployState()
		b, _ := SealRunState(alice, other)
		kv.Put(ctx, st.ID, b)
		if _, err := s.Load(ctx, st.ID); !errors.Is(err, ErrStateInvalid) {
			t.Fatalf("load of another run's state under this id: %v, want ErrStateInvalid", err)
		}
	})

	t.Run("signed by another key", func(t *testing.T) {
		mallory := testSigner(t)
		b, _ := SealRunState(mallory, st)
		kv.Put(ctx, st.ID, b)
		if _, err := s.Load(ctx, st.ID); !errors.Is(err, ErrStateSigner) {
			t.Fatalf("load of a state signed by another key: %v, want ErrStateSigner", err)
		}
		// Allowed when the config lists the key as one that may resume.
		nc, err := nats.Connect(js.Conn().ConnectedUrl())
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		js2, _ := jetstream.New(nc)
		s2, err := NewKVStore(ctx, js2, KVConfig{Signer: alice, ResumeKeys: []ssh.PublicKey{mallory.PublicKey()}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s2.Load(ctx, st.ID); err != nil {
			t.Fatalf("load of a state signed by an allowed key: %v", err)
		}
	})
}

// TestEngineRefusesStateWithoutHosts: the engine used to panic on a state
// whose host records were missing (assignment to a nil map).
func TestEngineRefusesStateWithoutHosts(t *testing.T) {
	st := &RunState{ID: "abcd1234", Workflow: "deploy", Batches: [][]string{{"web1"}}, Status: StatusFailed}
	e := &Engine{Caller: &hookCaller{}, Store: NewMemStore()}
	defer func() {
		if p := recover(); p != nil {
			t.Fatalf("engine panicked: %v", p)
		}
	}()
	_, err := e.Run(context.Background(), nil, &Job{Workflow: threeSteps(), State: st})
	if !errors.Is(err, ErrStateInvalid) {
		t.Fatalf("run of a state without host records: %v, want ErrStateInvalid", err)
	}
	st.Batches = nil
	if _, err := e.Run(context.Background(), nil, &Job{Workflow: threeSteps(), State: st}); !errors.Is(err, ErrStateInvalid) {
		t.Fatalf("run of a state without hosts: %v, want ErrStateInvalid", err)
	}
}

func kvStoreWith(t *testing.T, cfg KVConfig) (*KVStore, jetstream.JetStream) {
	t.Helper()
	srv := startBroker(t, -1, t.TempDir())
	return kvStoreOn(t, srv.ClientURL(), cfg)
}

func startBrokerB(b *testing.B) *server.Server {
	srv, err := broker.Start(broker.Config{Port: -1, StoreDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	return srv
}

func kvStoreOnB(b *testing.B, srv *server.Server, cfg KVConfig) (*KVStore, jetstream.JetStream) {
	return kvStoreOn(b, srv.ClientURL(), cfg)
}

func kvStoreOn(t testing.TB, url string, cfg KVConfig) (*KVStore, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond), nats.Timeout(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Signer == nil {
		cfg.Signer = testSigner(t)
	}
	s, err := NewKVStore(context.Background(), js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s, js
}

// startBroker starts a real embedded broker; restart with the same port
// and dir to keep the storage, or another dir to lose it.
func startBroker(t *testing.T, port int, dir string) *server.Server {
	t.Helper()
	srv, err := broker.Start(broker.Config{Port: port, StoreDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	return srv
}

func slogTo(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// TestLockDeletedMidRun: a broker user deletes the lock key in the middle
// of a run, and a second run takes the lock. The first run must start no
// new step and end with an error naming the lock, and the second must not
// overlap it. Before, the lost lease was only logged and both ran.
func TestLockDeletedMidRun(t *testing.T) {
	ctx := context.Background()
	s, js := kvStoreWith(t, KVConfig{LockTTL: 30 * time.Second})
	kv, err := js.KeyValue(ctx, "signet_locks")
	if err != nil {
		t.Fatal(err)
	}
	var second Held
	var secondErr error
	caller := &hookCaller{}
	caller.hook = func(c Call, n int) {
		if n != 2 { // during web1's second step
			return
		}
		if err := kv.Purge(ctx, "middleware.prod"); err != nil {
			t.Errorf("delete the lock: %v", err)
		}
		second, secondErr = s.Lock(ctx, "middleware/prod", Lease{Kind: "deploy", Holder: "mallory", Run: "ffff0000"})
	}
	st := deployState()
	recap, err := Execute(ctx, nil, Exec{Job: &Job{Workflow: threeSteps(), State: st}, Kind: "deploy", LockName: "middleware/prod",
		Caller: caller, Store: s, User: "alice@bastion"})
	if secondErr != nil {
		t.Fatalf("second run could not lock after the delete: %v", secondErr)
	}
	defer second.Unlock(ctx)
	var lle *LockLostError
	if !errors.As(err, &lle) || lle.Name != "middleware/prod" {
		t.Fatalf("run after its lock was deleted: err %v, want a LockLostError naming middleware/prod", err)
	}
	if n := caller.count(); n != 2 {
		t.Errorf("%d calls after the lock was lost at call 2, want 2 (no new step): %v", n, caller.calls)
	}
	if recap.Status != StatusFailed {
		t.Errorf("recap status %s, want failed", recap.Status)
	}
	got, err := s.Load(ctx, st.ID)
	if err != nil || got.Status != StatusFailed || !strings.Contains(got.Error, "lock middleware/prod") {
		t.Errorf("recorded state %v %v, want failed naming the lock", got, err)
	}
	// The second run's lock is untouched by the first's unlock.
	if err := second.Renew(ctx); err != nil {
		t.Errorf("the second run's lock after the first ended: %v", err)
	}
}

// TestMemLockBroken: the same with the in-memory store.
func TestMemLockBroken(t *testing.T) {
	m := NewMemStore()
	caller := &hookCaller{}
	caller.hook = func(c Call, n int) {
		if n == 1 {
			m.Break("middleware/prod")
		}
	}
	_, err := Execute(context.Background(), nil, Exec{Job: &Job{Workflow: threeSteps(), State: deployState()}, Kind: "deploy", LockName: "middleware/prod",
		Caller: caller, Store: m, User: "alice@bastion"})
	var lle *LockLostError
	if !errors.As(err, &lle) {
		t.Fatalf("err %v, want LockLostError", err)
	}
	if n := caller.count(); n != 1 {
		t.Errorf("%d calls, want 1", n)
	}
}

// TestSaveSurvivesBrokerRestart: the broker goes away during the last
// steps and comes back (same port, same storage) 12 s later. The
// state saves are retried, the run is recorded done and Execute returns
// nil. Before, a save that timed out made the run fail although the
// record said done.
func TestSaveSurvivesBrokerRestart(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	srv, err := broker.Start(broker.Config{Port: -1, StoreDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	port := srv.Addr().(*net.TCPAddr).Port
	var mu sync.Mutex
	cur := srv
	t.Cleanup(func() { mu.Lock(); defer mu.Unlock(); cur.Shutdown(); cur.WaitForShutdown() })
	s, _ := kvStoreOn(t, srv.ClientURL(), KVConfig{LockTTL: time.Minute})
	restarted := make(chan struct{})
	caller := &hookCaller{}
	caller.hook = func(c Call, n int) {
		if n != 6 { // the last step of the last host
			return
		}
		mu.Lock()
		cur.Shutdown()
		cur.WaitForShutdown()
		mu.Unlock()
		go func() {
			defer close(restarted)
			// Longer than one save attempt's 10s timeout.
			time.Sleep(12 * time.Second)
			s2, err := broker.Start(broker.Config{Port: port, StoreDir: dir})
			if err != nil {
				t.Errorf("restart broker: %v", err)
				return
			}
			mu.Lock()
			cur = s2
			mu.Unlock()
		}()
	}
	st := deployState()
	var log bytes.Buffer
	recap, err := Execute(ctx, nil, Exec{Job: &Job{Workflow: threeSteps(), State: st}, Kind: "deploy", LockName: "middleware/prod",
		Caller: caller, Store: s, User: "alice@bastion", Log: slogTo(&log)})
	<-restarted
	if err != nil {
		t.Fatalf("run across a broker restart: %v\nlog:\n%s", err, log.String())
	}
	if recap.Status != StatusDone {
		t.Errorf("recap %s, want done", recap.Status)
	}
	got, err := s.Load(ctx, st.ID)
	if err != nil || got.Status != StatusDone {
		t.Fatalf("recorded %v %v, want done", got, err)
	}
	if !strings.Contains(log.String(), "retrying") {
		t.Errorf("no save was retried: the broker outage did not hit a save\n%s", log.String())
	}
}

// TestSaveGivesUpSaysSo: a store that never comes back: the run's error
// is a SaveError saying the record and the fleet may disagree.
func TestSaveGivesUpSaysSo(t *testing.T) {
	fs := &failingStore{MemStore: NewMemStore()}
	caller := &hookCaller{}
	caller.hook = func(c Call, n int) {
		if n == 6 {
			fs.fail.Store(true)
		}
	}
	e := &Engine{Caller: caller, Store: fs, SaveBound: 300 * time.Millisecond}
	recap, err := e.Run(context.Background(), nil, &Job{Workflow: threeSteps(), State: deployState()})
	var se *SaveError
	if !errors.As(err, &se) {
		t.Fatalf("err %v, want SaveError", err)
	}
	if recap.Status != StatusDone || se.Status != StatusDone || se.Recorded != StatusRunning {
		t.Errorf("recap %s, save error %+v: want done, recorded running", recap.Status, se)
	}
	if !strings.Contains(err.Error(), "may disagree") {
		t.Errorf("error %q does not say the record may disagree", err)
	}
}

type failingStore struct {
	*MemStore
	fail atomic.Bool
}

func (f *failingStore) Save(ctx context.Context, st *RunState) error {
	if f.fail.Load() {
		return fmt.Errorf("save run %s: %w", st.ID, context.DeadlineExceeded)
	}
	return f.MemStore.Save(ctx, st)
}

// failWriter fails every write after the first n bytes.
type failWriter struct {
	n   int
	buf bytes.Buffer
}

func (w *failWriter) Write(p []byte) (int, error) {
	if w.buf.Len()+len(p) > w.n {
		return 0, errors.New("no space left on device")
	}
	return w.buf.Write(p)
}

// TestJSONSinkWriteError: the JSON event stream (Jenkins) fails mid-run.
// The run must stop after the hosts in progress and fail naming the write
// error. Before, the error was dropped and the run reported success.
func TestJSONSinkWriteError(t *testing.T) {
	w := &failWriter{n: 600}
	caller := &hookCaller{}
	_, err := Execute(context.Background(), nil, Exec{Job: &Job{Workflow: threeSteps(), State: deployState()}, Kind: "deploy", LockName: "middleware/prod",
		Output: w, Format: "json", Caller: caller, Store: NewMemStore(), User: "alice@bastion"})
	var oe *OutputError
	if !errors.As(err, &oe) || !strings.Contains(err.Error(), "no space left on device") {
		t.Fatalf("err %v, want an OutputError naming the write error", err)
	}
	if n := caller.count(); n != 3 {
		t.Errorf("%d calls, want 3: web1 finishes its steps, web2 is not started", n)
	}
}

// TestBrokerLostStorageMidRun: the broker restarts without its JetStream
// storage in the middle of a run. The run's lock is gone with it, so the
// run must start no new step and say so (before, it went on while a second
// deploy could take the lock), and the store must create its buckets again
// instead of failing with "stream not found".
func TestBrokerLostStorageMidRun(t *testing.T) {
	ctx := context.Background()
	srv, err := broker.Start(broker.Config{Port: -1, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	port := srv.Addr().(*net.TCPAddr).Port
	var mu sync.Mutex
	cur := srv
	t.Cleanup(func() { mu.Lock(); defer mu.Unlock(); cur.Shutdown(); cur.WaitForShutdown() })
	s, _ := kvStoreOn(t, srv.ClientURL(), KVConfig{LockTTL: 30 * time.Second})
	newDir := t.TempDir()
	caller := &hookCaller{}
	caller.hook = func(c Call, n int) {
		if n != 2 {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		cur.Shutdown()
		cur.WaitForShutdown()
		s2, err := broker.Start(broker.Config{Port: port, StoreDir: newDir})
		if err != nil {
			t.Errorf("restart broker: %v", err)
			return
		}
		cur = s2
	}
	st := deployState()
	_, err = Execute(ctx, nil, Exec{Job: &Job{Workflow: threeSteps(), State: st}, Kind: "deploy", LockName: "middleware/prod",
		Caller: caller, Store: s, User: "alice@bastion"})
	var lle *LockLostError
	if !errors.As(err, &lle) {
		t.Fatalf("run across a broker that lost its storage: %v, want a LockLostError", err)
	}
	if n := caller.count(); n != 2 {
		t.Errorf("%d calls, want 2: no step after the lock was lost", n)
	}
	// The store made its buckets again: the run's final state was saved
	// and can be loaded, and locks work.
	got, err := s.Load(ctx, st.ID)
	if err != nil || got.Status != StatusFailed {
		t.Fatalf("state after the storage loss: %v %v, want the failed run recorded again", got, err)
	}
	h, err := s.Lock(ctx, "middleware/prod", Lease{Kind: "deploy", Holder: "bob", Run: "bbbb"})
	if err != nil {
		t.Fatalf("lock after the storage loss: %v", err)
	}
	h.Unlock(ctx)
}

// TestKVStoreSavesOnlySigned: a store without the operator's key cannot
// write a run state the next resume would have to trust.
func TestKVStoreSavesOnlySigned(t *testing.T) {
	srv := startBroker(t, -1, t.TempDir())
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	s, err := NewKVStore(context.Background(), js, KVConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Save(context.Background(), deployState()); err == nil || !strings.Contains(err.Error(), "signer is required") {
		t.Fatalf("save without a signer: %v, want refused", err)
	}
}

type stuckCaller struct{ hookCaller }

func (s *stuckCaller) Call(ctx context.Context, c Call) ([]Result, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

// TestNoResponseNamesTheWait: a caller that does not return within the
// step's timeout was reported as "no response within 30s" after 40 s; the
// message must name the time waited.
func TestNoResponseNamesTheWait(t *testing.T) {
	old := callGrace
	callGrace = 2 * time.Second
	defer func() { callGrace = old }()
	w := &Workflow{Version: 1, Name: "deploy", Steps: []Step{{Name: "one", Agent: "service", Action: "stop", Timeout: time.Second}}}
	e := &Engine{Caller: &stuckCaller{}, Store: NewMemStore()}
	_, err := e.Run(context.Background(), nil, &Job{Workflow: w, State: deployState()})
	var se *StepError
	if !errors.As(err, &se) {
		t.Fatalf("err %v, want a step error", err)
	}
	var waited int
	if _, err := fmt.Sscanf(se.Detail, "no response within %ds (step timeout 1s)", &waited); err != nil || waited < 3 {
		t.Errorf("detail %q, want the time waited (at least 3s) and the step timeout", se.Detail)
	}
}

// TestRenewAfterLostConfirmation: a renewal the broker applied but whose
// answer was lost in a restart leaves the lease at a newer revision with
// this run's own value. The next renewal must take that revision, not
// call the lock lost (it did, and a deploy across broker kills stopped
// with "wrong last sequence"). A lease rewritten by anyone else stays lost.
func TestRenewAfterLostConfirmation(t *testing.T) {
	ctx := context.Background()
	s, js := kvStoreWith(t, KVConfig{LockTTL: 30 * time.Second})
	kv, err := js.KeyValue(ctx, "signet_locks")
	if err != nil {
		t.Fatal(err)
	}
	held, err := s.Lock(ctx, "middleware/prod", Lease{Kind: "deploy", Holder: "alice", Run: "aaaa0000"})
	if err != nil {
		t.Fatal(err)
	}
	defer held.Unlock(ctx)
	e, err := kv.Get(ctx, "middleware.prod")
	if err != nil {
		t.Fatal(err)
	}
	// The "lost" renewal: the same value, one revision on.
	if _, err := kv.Update(ctx, "middleware.prod", e.Value(), e.Revision()); err != nil {
		t.Fatal(err)
	}
	if err := held.Renew(ctx); err != nil {
		t.Fatalf("renew after an applied but unconfirmed renewal: %v", err)
	}
	// Another value at a newer revision: the lock is someone else's.
	e, _ = kv.Get(ctx, "middleware.prod")
	if _, err := kv.Update(ctx, "middleware.prod", []byte(`{"kind":"deploy","holder":"mallory","run":"ffff0000"}`), e.Revision()); err != nil {
		t.Fatal(err)
	}
	var lle *LockLostError
	if err := held.Renew(ctx); !errors.As(err, &lle) {
		t.Fatalf("renew after another run took the lease: %v, want a LockLostError", err)
	}
}
