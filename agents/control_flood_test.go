package agents

import (
	"context"
	"crypto/rand"
	"fmt"
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
)

// hostsOf is the admin's question to both hosts of the fleet.
func (f *ctlFleet) hostsOf(t *testing.T) control.HostsFunc {
	t.Helper()
	c, err := bus.NewClient(bus.ClientConfig{Conn: f.nc, Collective: "t", Signer: f.admin, User: "bob", HostKeys: f.hostKeys})
	must(t, err)
	return control.AskHosts(c, bus.Query{Targets: []string{"web1", "web2"}, Timeout: 5 * time.Second})
}

// flood puts junk under key n times, as any broker user can (on a
// locked-down broker through the reply-subject gap).
func (f *ctlFleet) flood(t *testing.T, key string, n int) {
	t.Helper()
	js, err := jetstream.New(f.nc)
	must(t, err)
	kv, err := js.KeyValue(context.Background(), control.Bucket("t"))
	must(t, err)
	for i := 0; i < n; i++ {
		if _, err := kv.Put(context.Background(), key, []byte(fmt.Sprintf(`{"junk":%d}`, i))); err != nil {
			t.Fatal(err)
		}
	}
}

// TestControlStateForAdmins: the hosts answer an admin's control_state
// with the signed frames they applied, even while a lock covers every
// action (the unlock needs it); a locked operator is refused as for any
// action, and so is the admin once revoked.
func TestControlStateForAdmins(t *testing.T) {
	f := newCtlFleet(t, "", 0)
	f.update(t, f.admin, control.KindLocks, func(d *control.Document) error {
		d.Locks = append(d.Locks, control.Lock{ID: "L1", Scope: control.Scope{All: true}, Reason: "incident", By: "bob", At: d.Issued})
		return nil
	})
	f.applied(t, control.KindLocks, 1)
	res := f.do(t, f.admin, control.StateAgent, control.StateAction)
	for _, id := range []string{"web1", "web2"} {
		wantStatus(t, res, id, bus.ResultOK)
		hs, err := control.ParseState(id, res[id].Reply.Data)
		must(t, err)
		sd, err := control.Open(hs.Frames[control.KindLocks])
		must(t, err)
		if sd.Doc.Seq != 1 || len(sd.Doc.Locks) != 1 || hs.Frames[control.KindRevocations] != nil {
			t.Fatalf("%s: control_state %+v", id, hs)
		}
	}
	wantStatus(t, f.do(t, f.alice, control.StateAgent, control.StateAction), "web1", bus.ResultRefused, "locked: all actions")
	eventually(t, func() error { // audited as any action
		if !f.audits["web1"].has(func(r *bus.AuditRecord) bool {
			return r.Action == control.StateAction && r.Decision == bus.DecisionAccepted
		}) {
			return fmt.Errorf("web1 did not audit the control_state read")
		}
		return nil
	})

	bob := f.admin.PublicKey()
	f.update(t, f.admin, control.KindRevocations, func(d *control.Document) error {
		d.Revoked = append(d.Revoked, control.Revocation{Key: ssh.FingerprintSHA256(bob), Reason: "stolen", By: "bob", At: d.Issued})
		return nil
	})
	f.applied(t, control.KindRevocations, 1)
	wantStatus(t, f.do(t, f.admin, control.StateAgent, control.StateAction), "web2", bus.ResultRefused, "revoked: key ")
}

// TestTwoAdminsRaceUnderFlood: two admins add a lock each at the same
// time while a broker user keeps writing junk under the locks key, after
// burying the last admin document under more junk than the bucket keeps.
// Both must succeed and the hosts must end with both locks: the admin
// whose plain put lost the hosts' sequence check finds out and builds
// again on the winner's document.
func TestTwoAdminsRaceUnderFlood(t *testing.T) {
	f := newCtlFleet(t, "", 0)
	f.update(t, f.admin, control.KindLocks, func(d *control.Document) error {
		d.Locks = append(d.Locks, control.Lock{ID: "L0", Scope: control.Scope{Fact: "app=none"}, Reason: "old", By: "bob", At: d.Issued})
		return nil
	})
	f.applied(t, control.KindLocks, 1)
	f.flood(t, control.KindLocks, pastHistory)
	stop := make(chan struct{})
	var flooder sync.WaitGroup
	flooder.Add(1)
	go func() { // a continuous flood during the race
		defer flooder.Done()
		js, _ := jetstream.New(f.nc)
		kv, err := js.KeyValue(context.Background(), control.Bucket("t"))
		if err != nil {
			return
		}
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			_, _ = kv.Put(context.Background(), control.KindLocks, []byte(fmt.Sprintf(`{"junk":%d}`, i)))
		}
	}()
	hosts := f.hostsOf(t)
	var wg sync.WaitGroup
	errs := make([]error, 2)
	notices := make([][]string, 2)
	for i, id := range []string{"A", "B"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mu sync.Mutex
			_, errs[i] = f.store.Update(context.Background(), control.UpdateOptions{Kind: control.KindLocks, Signer: f.admin, By: "admin" + id,
				TrustBase: func(*control.Signed) error { return nil }, Hosts: hosts, ConfirmWait: 10 * time.Second,
				Notice: func(s string) { mu.Lock(); notices[i] = append(notices[i], s); mu.Unlock() },
				Edit: func(d *control.Document) error {
					d.Locks = append(d.Locks, control.Lock{ID: id, Scope: control.Scope{Agent: "slow"}, Reason: "race", By: "admin" + id, At: d.Issued})
					return nil
				}})
		}()
	}
	wg.Wait()
	close(stop)
	flooder.Wait()
	for i := range errs {
		t.Logf("admin %d notices: %q", i, notices[i])
		must(t, errs[i])
	}
	eventually(t, func() error {
		for id, h := range f.hosts {
			a := h.ctl.locks.Load()
			if ids := a.doc.LockIDs(); !slices.Equal(ids, []string{"A", "B", "L0"}) {
				return fmt.Errorf("%s holds locks %v (seq %d), want A B L0", id, ids, a.doc.Seq)
			}
		}
		return nil
	})
}

// TestRaceLoserBuildsAgain plays the race the plain put opens, step by
// step: admin A's compare-and-set loses to junk (its base came from the
// hosts, so once is enough), so A puts seq 2 plainly; just before, admin B's seq 2 reaches the hosts, which then
// refuse A's as a rollback. A must find out from the hosts and publish
// seq 3 on top of B's document, keeping B's lock.
func TestRaceLoserBuildsAgain(t *testing.T) {
	f := newCtlFleet(t, "", 0)
	f.update(t, f.admin, control.KindLocks, func(d *control.Document) error {
		d.Locks = append(d.Locks, control.Lock{ID: "L0", Scope: control.Scope{Fact: "app=none"}, Reason: "old", By: "bob", At: d.Issued})
		return nil
	})
	f.applied(t, control.KindLocks, 1)
	f.flood(t, control.KindLocks, pastHistory)
	var notices []string
	edits := 0
	d, err := f.store.Update(context.Background(), control.UpdateOptions{Kind: control.KindLocks, Signer: f.admin, By: "adminA",
		TrustBase: func(*control.Signed) error { return nil }, Hosts: f.hostsOf(t),
		Notice: func(s string) { notices = append(notices, s) },
		Edit: func(d *control.Document) error {
			edits++
			switch {
			case edits == 1: // junk lands between A's read and A's compare-and-set
				f.flood(t, control.KindLocks, 1)
			case edits == 2: // A is about to put seq 2 plainly; B's seq 2 is first
				b := &control.Document{Kind: control.KindLocks, Collective: "t", Seq: 2, Issued: time.Now().UnixMilli(), By: "adminB",
					Locks: append(slices.Clone(d.Locks), control.Lock{ID: "B", Scope: control.Scope{Agent: "slow"}, Reason: "race", By: "adminB", At: 1})}
				frame, err := control.Sign(rand.Reader, f.admin, b)
				must(t, err)
				must(t, f.store.Put(context.Background(), control.KindLocks, frame))
				f.applied(t, control.KindLocks, 2)
			}
			d.Locks = append(d.Locks, control.Lock{ID: "A", Scope: control.Scope{Agent: "gate"}, Reason: "race", By: "adminA", At: d.Issued})
			return nil
		}})
	must(t, err)
	t.Logf("notices: %q", notices)
	if d.Seq != 3 || !slices.Equal(d.LockIDs(), []string{"A", "B", "L0"}) {
		t.Fatalf("published seq %d with locks %v, want seq 3 with A B L0", d.Seq, d.LockIDs())
	}
	if !slices.ContainsFunc(notices, func(s string) bool {
		return strings.Contains(s, "another admin published first and the hosts refused yours")
	}) {
		t.Fatalf("the loser was not told: %q", notices)
	}
	f.applied(t, control.KindLocks, 3)
}

// pastHistory is more junk revisions than the control bucket keeps.
const pastHistory = 70

// TestNewHostFindsDocumentUnderJunk: a host that starts (or reconnects)
// while the locks key's current value is junk still applies the newest
// admin document among the revisions the bucket keeps, and the older ones
// it replays on the way are not audited as refused.
func TestNewHostFindsDocumentUnderJunk(t *testing.T) {
	f := newCtlFleet(t, "", 0)
	for _, id := range []string{"L1", "L2"} {
		f.update(t, f.admin, control.KindLocks, func(d *control.Document) error {
			d.Locks = append(d.Locks, control.Lock{ID: id, Scope: control.Scope{Agent: "gate"}, Reason: "incident", By: "bob", At: d.Issued})
			return nil
		})
	}
	f.applied(t, control.KindLocks, 2)
	f.flood(t, control.KindLocks, 20)
	h, err := NewHost(HostOptions{Identity: "web3", Collective: "t", AuthorizedKeys: filepath.Join(f.dir, "authorized_keys"), Policy: f.policy})
	must(t, err)
	nc, err := nats.Connect(f.url)
	must(t, err)
	defer nc.Close()
	cfg := &Config{Identity: "web3", Collective: "t"}
	cfg.setDefaults()
	aud := &memAudit{}
	ctx, cancel := context.WithCancel(context.Background())
	done, ready := make(chan error, 1), make(chan struct{})
	go func() {
		done <- Serve(ctx, ServeOptions{Conn: nc, Host: h, HostKey: signer(t), Audit: aud, Config: cfg, Ready: func() { close(ready) }})
	}()
	defer func() { cancel(); <-done }()
	<-ready
	eventually(t, func() error {
		if a := h.ctl.locks.Load(); a == nil || a.doc.Seq != 2 {
			return fmt.Errorf("web3 has not applied locks seq 2 from under the junk")
		}
		return nil
	})
	if aud.has(func(r *bus.AuditRecord) bool { return r.Code == CodeControlRefused }) {
		t.Fatal("web3 audited the replayed history as refused")
	}
}
