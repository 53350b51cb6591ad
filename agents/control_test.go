package agents

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"golang.org/x/crypto/ssh"

	"github.com/signetbus/signet/bus"
	"github.com/signetbus/signet/bus/control"
	"github.com/signetbus/signet/internal/broker/brokertest"
	"github.com/signetbus/signet/plugins"
)

// gate is a test plugin whose "hold" action runs until the test releases
// it, so a lock can arrive while an action is in flight.
type gate struct {
	started chan struct{}
	release chan struct{}
}

func (gate) Describe() plugins.DDL {
	return plugins.DDL{Name: "gate", Actions: []plugins.Action{{Name: "hold", Timeout: time.Minute}}}
}

func (g gate) Run(ctx context.Context, _ *plugins.Request) (*plugins.Result, error) {
	g.started <- struct{}{}
	select {
	case <-g.release:
		return &plugins.Result{Summary: "released"}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// ctlFleet is two hosts on a real broker: web1 (env=prod) and web2
// (env=dev), an admin bob, an operator alice (role deploy) and mallory
// (role deploy, trusted, not an admin).
type ctlFleet struct {
	dir                 string
	url                 string
	admin, alice, mal   ssh.Signer
	hosts               map[string]*Host
	hostKeys            keyMap
	audits              map[string]*memAudit
	store               *control.Store
	gate                gate
	nc                  *nats.Conn
	revokedKeys, policy string
}

func newCtlFleet(t *testing.T, extraPolicy string, maxAge time.Duration) *ctlFleet {
	t.Helper()
	s := brokertest.Start(t)
	f := &ctlFleet{dir: t.TempDir(), url: s.ClientURL(), admin: signer(t), alice: signer(t), mal: signer(t),
		hosts: map[string]*Host{}, hostKeys: keyMap{}, audits: map[string]*memAudit{},
		gate: gate{started: make(chan struct{}, 4), release: make(chan struct{})}}
	line := func(s ssh.Signer) string { return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(s.PublicKey()))) }
	auth := fmt.Sprintf("roles=\"admin\",name=\"bob\" %s\nroles=\"deploy\",name=\"alice\" %s\nroles=\"deploy\",name=\"mallory\" %s\n",
		line(f.admin), line(f.alice), line(f.mal))
	must(t, os.WriteFile(filepath.Join(f.dir, "authorized_keys"), []byte(auth), 0o600))
	f.policy = filepath.Join(f.dir, "policy.yaml")
	must(t, os.WriteFile(f.policy, []byte("rules:\n  - roles: [admin, deploy]\n    allow: [\"*\"]\nadmin_roles: [admin]\n"+extraPolicy), 0o600))
	f.revokedKeys = filepath.Join(f.dir, "revoked_keys")
	must(t, os.WriteFile(f.revokedKeys, []byte("# none yet\n"), 0o600))
	ctx, cancel := context.WithCancel(context.Background())
	var served []chan error
	t.Cleanup(func() {
		cancel()
		close(f.gate.release)
		for _, c := range served {
			<-c
		}
	})
	for id, env := range map[string]string{"web1": "prod", "web2": "dev"} {
		h, err := NewHost(HostOptions{Identity: id, Collective: "t", Facts: map[string]string{"env": env},
			Plugins: map[string]plugins.Plugin{"slow": slow{}, "gate": f.gate}, AuthorizedKeys: filepath.Join(f.dir, "authorized_keys"),
			Policy: f.policy, RevokedKeys: f.revokedKeys, RevocationMaxAge: maxAge, ActionTimeout: time.Minute})
		must(t, err)
		hk := signer(t)
		f.hosts[id], f.hostKeys[id], f.audits[id] = h, hk.PublicKey(), &memAudit{}
		nc, err := nats.Connect(f.url)
		must(t, err)
		t.Cleanup(nc.Close)
		cfg := &Config{Identity: id, Collective: "t"}
		cfg.setDefaults()
		ready := make(chan struct{})
		done := make(chan error, 1)
		served = append(served, done)
		go func() {
			done <- Serve(ctx, ServeOptions{Conn: nc, Host: h, HostKey: hk, Audit: f.audits[id], Config: cfg, Ready: func() { close(ready) }})
		}()
		<-ready
	}
	nc, err := nats.Connect(f.url)
	must(t, err)
	t.Cleanup(nc.Close)
	f.nc = nc
	f.store, err = control.OpenStore(context.Background(), nc, "t", 0)
	must(t, err)
	return f
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// do sends agent.action from s to both hosts and returns the results by host.
func (f *ctlFleet) do(t *testing.T, s ssh.Signer, agent, action string) map[string]bus.Result {
	t.Helper()
	c, err := bus.NewClient(bus.ClientConfig{Conn: f.nc, Collective: "t", Signer: s, User: "u", HostKeys: f.hostKeys})
	must(t, err)
	out, err := c.Do(context.Background(), bus.Query{Agent: agent, Action: action, Targets: []string{"web1", "web2"}, Timeout: 5 * time.Second})
	must(t, err)
	res := map[string]bus.Result{}
	for _, r := range out.Results {
		res[r.Identity] = r
	}
	return res
}

// update publishes the next document of kind, signed by s.
func (f *ctlFleet) update(t *testing.T, s ssh.Signer, kind string, edit func(*control.Document) error) *control.Document {
	t.Helper()
	d, err := f.store.Update(context.Background(), control.UpdateOptions{Kind: kind, Signer: s, By: "bob",
		TrustBase: func(*control.Signed) error { return nil }, Edit: edit})
	must(t, err)
	return d
}

// applied waits until every host has accepted document seq of kind.
func (f *ctlFleet) applied(t *testing.T, kind string, seq uint64) {
	t.Helper()
	eventually(t, func() error {
		for id, h := range f.hosts {
			slot := &h.ctl.locks
			if kind == control.KindRevocations {
				slot = &h.ctl.revoked
			}
			if a := slot.Load(); a == nil || a.doc.Seq != seq {
				return fmt.Errorf("%s has not applied %s seq %d", id, kind, seq)
			}
		}
		return nil
	})
}

// refusedControl waits until every host audited a refused control
// document whose reason contains want.
func (f *ctlFleet) refusedControl(t *testing.T, want string) {
	t.Helper()
	eventually(t, func() error {
		for id, a := range f.audits {
			if !a.has(func(r *bus.AuditRecord) bool { return r.Code == CodeControlRefused && strings.Contains(r.Reason, want) }) {
				return fmt.Errorf("%s has no refused control record with %q", id, want)
			}
		}
		return nil
	})
}

func (a *memAudit) has(fn func(*bus.AuditRecord) bool) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, r := range a.recs {
		if fn(r) {
			return true
		}
	}
	return false
}

func wantStatus(t *testing.T, res map[string]bus.Result, id string, status bus.ResultStatus, contains ...string) {
	t.Helper()
	r := res[id]
	if r.Status != status {
		t.Fatalf("%s: status %s (%s), want %s", id, r.Status, r.Error, status)
	}
	for _, c := range contains {
		if !strings.Contains(r.Error, c) {
			t.Fatalf("%s: %q does not say %q", id, r.Error, c)
		}
	}
}

func TestRevokedKeyRefusedEverywhere(t *testing.T) {
	f := newCtlFleet(t, "", 0)
	res := f.do(t, f.alice, "rpcutil", "ping")
	wantStatus(t, res, "web1", bus.ResultOK)
	fp := ssh.FingerprintSHA256(f.alice.PublicKey())
	d := f.update(t, f.admin, control.KindRevocations, func(d *control.Document) error {
		d.Revoked = append(d.Revoked, control.Revocation{Key: fp, Reason: "laptop stolen", By: "bob", At: time.Now().UnixMilli()})
		return nil
	})
	f.applied(t, control.KindRevocations, d.Seq)
	res = f.do(t, f.alice, "rpcutil", "ping")
	for _, id := range []string{"web1", "web2"} {
		wantStatus(t, res, id, bus.ResultRefused, "revoked: key "+fp+" revoked by admin bob at ", ": laptop stolen")
		if res[id].Reply.Code != control.CodeRevoked {
			t.Fatalf("%s: code %q", id, res[id].Reply.Code)
		}
		if !f.audits[id].has(func(r *bus.AuditRecord) bool { return r.Decision == DecisionRevoke && strings.Contains(r.Reason, fp) }) {
			t.Fatalf("%s did not audit the revocation", id)
		}
	}
	wantStatus(t, f.do(t, f.mal, "rpcutil", "ping"), "web2", bus.ResultOK) // other keys unaffected
}

func TestRevokedKeysFile(t *testing.T) {
	f := newCtlFleet(t, "", 0)
	must(t, os.WriteFile(f.revokedKeys, []byte("# stolen\n"+string(ssh.MarshalAuthorizedKey(f.alice.PublicKey()))), 0o600))
	for _, h := range f.hosts {
		must(t, h.Reload())
	}
	res := f.do(t, f.alice, "rpcutil", "ping")
	wantStatus(t, res, "web1", bus.ResultRefused, "revoked: key "+ssh.FingerprintSHA256(f.alice.PublicKey())+" is listed in "+f.revokedKeys+" line 2")
	// An unreadable list is never dropped silently.
	must(t, os.WriteFile(f.revokedKeys, []byte("not a key\n"), 0o600))
	if err := f.hosts["web1"].Reload(); err == nil || !strings.Contains(err.Error(), "revoked keys") {
		t.Fatalf("reload with a broken list: %v", err)
	}
	wantStatus(t, f.do(t, f.alice, "rpcutil", "ping"), "web1", bus.ResultRefused, "revoked")
}

func TestForgedAndReplayedControlsRefused(t *testing.T) {
	f := newCtlFleet(t, "", 0)
	ctx := context.Background()
	lockAll := func(d *control.Document) error {
		d.Locks = append(d.Locks, control.Lock{ID: fmt.Sprintf("L%d", d.Seq), Scope: control.Scope{All: true}, Reason: "incident", By: "bob", At: d.Issued})
		return nil
	}
	// A trusted key without an admin role cannot lock.
	forged, err := control.Sign(rand.Reader, f.mal, &control.Document{Kind: control.KindLocks, Collective: "t", Seq: 99, Issued: time.Now().UnixMilli(), Locks: []control.Lock{{ID: "x", Scope: control.Scope{All: true}}}})
	must(t, err)
	must(t, f.store.Put(ctx, control.KindLocks, forged))
	f.refusedControl(t, "none of the policy's admin_roles")
	// Nor can an untrusted key.
	forged, err = control.Sign(rand.Reader, signer(t), &control.Document{Kind: control.KindLocks, Collective: "t", Seq: 100, Issued: time.Now().UnixMilli(), Locks: []control.Lock{{ID: "x", Scope: control.Scope{All: true}}}})
	must(t, err)
	must(t, f.store.Put(ctx, control.KindLocks, forged))
	f.refusedControl(t, "is not trusted on this host")
	// A request signature is not a control signature.
	req, err := bus.SignRequest(f.admin, &bus.Request{Version: 1, ID: bus.NewID(), Collective: "t", Agent: "rpcutil", Action: "ping", Created: time.Now().UnixMilli(), TTL: 60})
	must(t, err)
	must(t, f.store.Put(ctx, control.KindLocks, req))
	f.refusedControl(t, "malformed")
	wantStatus(t, f.do(t, f.alice, "rpcutil", "ping"), "web1", bus.ResultOK)

	// The admin locks, unlocks and locks again; the old unlock replayed is refused.
	f.update(t, f.admin, control.KindLocks, func(d *control.Document) error { d.Locks = nil; return lockAll(d) })
	unlocked := f.update(t, f.admin, control.KindLocks, func(d *control.Document) error { d.Locks = nil; return nil })
	f.applied(t, control.KindLocks, unlocked.Seq)
	old, _, err := f.store.Current(ctx, control.KindLocks)
	must(t, err)
	oldFrame, err := control.Sign(rand.Reader, f.admin, old.Doc) // the same document, as a broker user could copy it
	must(t, err)
	relocked := f.update(t, f.admin, control.KindLocks, lockAll)
	f.applied(t, control.KindLocks, relocked.Seq)
	must(t, f.store.Put(ctx, control.KindLocks, oldFrame))
	f.refusedControl(t, "an old document replayed or a rollback")
	wantStatus(t, f.do(t, f.alice, "rpcutil", "ping"), "web1", bus.ResultRefused, "locked: all actions locked by admin bob", "incident")

	// A document altered after signing does not verify.
	frame, err := control.Sign(rand.Reader, f.admin, &control.Document{Kind: control.KindLocks, Collective: "t", Seq: relocked.Seq + 1, Issued: time.Now().UnixMilli()})
	must(t, err)
	tampered := []byte(strings.Replace(string(frame), `"payload":"`, `"payload":"A`, 1))
	if err := f.hosts["web1"].ApplyControl(control.KindLocks, tampered, f.audits["web1"]); err == nil {
		t.Fatal("tampered document accepted")
	}
	// A revoked admin's documents are refused.
	fp := ssh.FingerprintSHA256(f.admin.PublicKey())
	f.applied(t, control.KindRevocations, f.update(t, f.admin, control.KindRevocations, func(d *control.Document) error {
		d.Revoked = append(d.Revoked, control.Revocation{Key: fp, Reason: "left", By: "bob", At: d.Issued})
		return nil
	}).Seq)
	err = f.hosts["web1"].ApplyControl(control.KindLocks, frame, f.audits["web1"])
	if err == nil || !strings.Contains(err.Error(), "revoked") {
		t.Fatalf("a revoked admin's unlock: %v", err)
	}
	if errors.Is(err, control.ErrRollback) {
		t.Fatal("wrong reason")
	}
}

// TestStaleRevocationListFailsClosed: for the roles the policy marks,
// a host refuses while its revocation list or its lock set from the
// broker is missing or older than revocation_max_age.
func TestStaleRevocationListFailsClosed(t *testing.T) {
	f := newCtlFleet(t, "fresh_revocation_roles: [deploy]\n", time.Hour)
	res := f.do(t, f.alice, "rpcutil", "ping")
	wantStatus(t, res, "web1", bus.ResultRefused, "no revocation list from the broker", "roles deploy need one younger than 1h0m0s")
	if res["web1"].Reply.Code != control.CodeStaleRevocations {
		t.Fatalf("code %q", res["web1"].Reply.Code)
	}
	wantStatus(t, f.do(t, f.admin, "rpcutil", "ping"), "web1", bus.ResultOK) // admin is not a marked role
	f.store.Now = func() time.Time { return time.Now().Add(-2 * time.Hour) }
	f.applied(t, control.KindRevocations, f.update(t, f.admin, control.KindRevocations, nil).Seq)
	wantStatus(t, f.do(t, f.alice, "rpcutil", "ping"), "web2", bus.ResultRefused, "revocation list from the broker is 2h0m", "old (seq 1, signed by bob")
	f.store.Now = time.Now
	f.applied(t, control.KindRevocations, f.update(t, f.admin, control.KindRevocations, nil).Seq)
	// A fresh revocation list is not enough: a broker that withholds a
	// new lock keeps a locked-out change running just the same.
	wantStatus(t, f.do(t, f.alice, "rpcutil", "ping"), "web2", bus.ResultRefused, "no lock set from the broker", "signet revoke --refresh")
	f.store.Now = func() time.Time { return time.Now().Add(-2 * time.Hour) }
	f.applied(t, control.KindLocks, f.update(t, f.admin, control.KindLocks, nil).Seq)
	wantStatus(t, f.do(t, f.alice, "rpcutil", "ping"), "web2", bus.ResultRefused, "lock set from the broker is 2h0m", "old (seq 1, signed by bob")
	f.store.Now = time.Now
	f.applied(t, control.KindLocks, f.update(t, f.admin, control.KindLocks, nil).Seq)
	wantStatus(t, f.do(t, f.alice, "rpcutil", "ping"), "web2", bus.ResultOK)
}

func TestLockScopes(t *testing.T) {
	f := newCtlFleet(t, "", 0)
	lock := func(s control.Scope) {
		t.Helper()
		f.applied(t, control.KindLocks, f.update(t, f.admin, control.KindLocks, func(d *control.Document) error {
			d.Locks = []control.Lock{{ID: "L1", Scope: s, Reason: "change freeze", By: "bob", At: d.Issued}}
			return nil
		}).Seq)
	}
	lock(control.Scope{Agent: "slow"})
	res := f.do(t, f.alice, "slow", "fail")
	wantStatus(t, res, "web1", bus.ResultRefused, "locked: agent slow locked by admin bob", "change freeze", "signet unlock L1")
	wantStatus(t, res, "web2", bus.ResultRefused, "locked")
	wantStatus(t, f.do(t, f.alice, "rpcutil", "ping"), "web1", bus.ResultOK)

	lock(control.Scope{Fact: "env=prod"})
	res = f.do(t, f.alice, "rpcutil", "ping")
	wantStatus(t, res, "web1", bus.ResultRefused, "locked: hosts with env=prod")
	wantStatus(t, res, "web2", bus.ResultOK)

	lock(control.Scope{All: true})
	res = f.do(t, f.admin, "rpcutil", "ping")
	wantStatus(t, res, "web1", bus.ResultRefused, "locked: all actions")
	wantStatus(t, res, "web2", bus.ResultRefused, "locked: all actions")

	f.applied(t, control.KindLocks, f.update(t, f.admin, control.KindLocks, func(d *control.Document) error { d.Locks = nil; return nil }).Seq)
	wantStatus(t, f.do(t, f.alice, "rpcutil", "ping"), "web1", bus.ResultOK)
	for id, a := range f.audits {
		for _, dec := range []string{DecisionLock, DecisionUnlock} {
			if !a.has(func(r *bus.AuditRecord) bool { return r.Decision == dec && r.Principal == "bob" }) {
				t.Fatalf("%s did not audit a %s", id, dec)
			}
		}
	}
}

func TestLockLetsInFlightActionFinish(t *testing.T) {
	f := newCtlFleet(t, "", 0)
	c, err := bus.NewClient(bus.ClientConfig{Conn: f.nc, Collective: "t", Signer: f.alice, User: "alice", HostKeys: f.hostKeys})
	must(t, err)
	done := make(chan *bus.Outcome, 1)
	go func() {
		out, err := c.Do(context.Background(), bus.Query{Agent: "gate", Action: "hold", Targets: []string{"web1"}, Timeout: 30 * time.Second})
		if err != nil {
			t.Error(err)
		}
		done <- out
	}()
	<-f.gate.started
	f.applied(t, control.KindLocks, f.update(t, f.admin, control.KindLocks, func(d *control.Document) error {
		d.Locks = []control.Lock{{ID: "L1", Scope: control.Scope{All: true}, Reason: "stop", By: "bob", At: d.Issued}}
		return nil
	}).Seq)
	wantStatus(t, f.do(t, f.alice, "rpcutil", "ping"), "web1", bus.ResultRefused, "locked")
	f.gate.release <- struct{}{}
	out := <-done
	if out == nil || out.Results[0].Status != bus.ResultOK {
		t.Fatalf("in-flight action: %+v", out)
	}
}

func TestControlStateSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	admin := signer(t)
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(admin.PublicKey())))
	must(t, os.WriteFile(filepath.Join(dir, "authorized_keys"), []byte("roles=\"admin\",name=\"bob\" "+line+"\n"), 0o600))
	must(t, os.WriteFile(filepath.Join(dir, "policy.yaml"), []byte("rules:\n  - roles: [admin]\n    allow: [\"*\"]\nadmin_roles: [admin]\n"), 0o600))
	state := filepath.Join(dir, "state", "control.json")
	newHost := func() *Host {
		h, err := NewHost(HostOptions{Identity: "web1", Collective: "t", AuthorizedKeys: filepath.Join(dir, "authorized_keys"),
			Policy: filepath.Join(dir, "policy.yaml"), ControlState: state})
		must(t, err)
		return h
	}
	frames := map[uint64][]byte{}
	for seq := uint64(1); seq <= 3; seq++ {
		d := &control.Document{Kind: control.KindLocks, Collective: "t", Seq: seq, Issued: time.Now().UnixMilli()}
		if seq != 2 { // seq 2 is the unlock
			d.Locks = []control.Lock{{ID: fmt.Sprintf("L%d", seq), Scope: control.Scope{All: true}, Reason: "r"}}
		}
		var err error
		frames[seq], err = control.Sign(rand.Reader, admin, d)
		must(t, err)
	}
	h := newHost()
	for seq := uint64(1); seq <= 3; seq++ {
		must(t, h.ApplyControl(control.KindLocks, frames[seq], &memAudit{}))
	}
	h = newHost() // a restart
	if a := h.ctl.locks.Load(); a == nil || a.doc.Seq != 3 {
		t.Fatal("the saved lock set was not restored")
	}
	if err := h.ApplyControl(control.KindLocks, frames[2], &memAudit{}); !errors.Is(err, control.ErrRollback) {
		t.Fatalf("the old unlock after a restart: %v", err)
	}
}

// TestRefusedControlFloodIsBounded: anyone who can write the bucket can
// write many documents; each host audits only the first ones of a minute
// one by one and counts the rest.
func TestRefusedControlFloodIsBounded(t *testing.T) {
	f := newFixture(t, "admin", "rules:\n  - roles: [admin]\n    allow: [\"*\"]\nadmin_roles: [admin]\n")
	aud := &memAudit{}
	now := time.Now()
	f.host.ctl.now = func() time.Time { return now }
	for i := 0; i < 1000; i++ {
		if err := f.host.ApplyControl(control.KindLocks, []byte("garbage"), aud); err == nil {
			t.Fatal("garbage accepted")
		}
	}
	if len(aud.recs) != controlRefusalRecords {
		t.Fatalf("%d records for 1000 refused documents", len(aud.recs))
	}
	now = now.Add(time.Minute)
	_ = f.host.ApplyControl(control.KindLocks, []byte("garbage"), aud)
	if !aud.has(func(r *bus.AuditRecord) bool {
		return r.Decision == bus.DecisionSuppressed && r.Suppressed[CodeControlRefused] == 980
	}) {
		t.Fatal("the documents left out were not counted")
	}
}

func TestRevocationConfig(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "signetd.yaml")
	must(t, os.WriteFile(path, []byte("identity: web1\nrevoked_keys: /etc/signet/revoked_keys\nrevocation_max_age: 10s\n"), 0o600))
	cfg, err := LoadConfig(path)
	must(t, err)
	if cfg.RevokedKeys != "/etc/signet/revoked_keys" || cfg.ControlState != "/etc/signet/control.json" {
		t.Fatalf("revoked_keys %q control_state %q", cfg.RevokedKeys, cfg.ControlState)
	}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "revocation_max_age: must be between 1m") {
		t.Fatalf("revocation_max_age 10s: %v", err)
	}
	cfg.RevocationMaxAge = 0
	cfg.setDefaults()
	if cfg.RevocationMaxAge.D() != 24*time.Hour {
		t.Fatalf("default revocation_max_age %s", cfg.RevocationMaxAge.D())
	}
}

// TestRevokedKeysFileFromSSHKeygen reads a list of keys ssh-keygen made,
// as OpenSSH's RevokedKeys would, and refuses a binary KRL with a clear
// message rather than misreading it.
func TestRevokedKeysFileFromSSHKeygen(t *testing.T) {
	kg, err := exec.LookPath("ssh-keygen")
	if err != nil {
		t.Skip("ssh-keygen not installed:", err)
	}
	dir := t.TempDir()
	key := filepath.Join(dir, "stolen")
	if out, err := exec.Command(kg, "-q", "-t", "ed25519", "-N", "", "-C", "stolen@laptop", "-f", key).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v %s", err, out)
	}
	pubText, err := os.ReadFile(key + ".pub")
	must(t, err)
	list := filepath.Join(dir, "revoked_keys")
	must(t, os.WriteFile(list, append([]byte("# revoked 2026-11-29\n\n"), pubText...), 0o600))
	m, err := loadRevokedKeys(list)
	must(t, err)
	pub, _, _, _, err := ssh.ParseAuthorizedKey(pubText)
	must(t, err)
	if (*m)[ssh.FingerprintSHA256(pub)] != 3 {
		t.Fatalf("revoked: %v", *m)
	}
	krl := filepath.Join(dir, "krl")
	if out, err := exec.Command(kg, "-k", "-f", krl, key+".pub").CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen -k: %v %s", err, out)
	}
	must(t, os.Chmod(krl, 0o600))
	if _, err := loadRevokedKeys(krl); err == nil || !strings.Contains(err.Error(), "binary KRL") {
		t.Fatalf("KRL: %v", err)
	}
}
