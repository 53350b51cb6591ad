package provision_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"golang.org/x/crypto/ssh"

	"github.com/signetbus/signet/agents"
	"github.com/signetbus/signet/bus"
	"github.com/signetbus/signet/bus/control"
	"github.com/signetbus/signet/internal/keys/keytest"
)

// TestAdminLocksThroughReplySubjectFlood: on a locked-down broker, where
// only admins may publish on the control bucket, an operator's account
// still fills the locks key with the broker's JSON through the reply
// subject of message gets (TestReplySubjectGap), more times than the
// bucket keeps. The admin's next lock builds on the document the host
// (a real responder on the locked broker) applied, and the host applies
// it; without asking the hosts it fails, as it did before.
func TestAdminLocksThroughReplySubjectFlood(t *testing.T) {
	l := startLocked(t)
	web1, _ := l.connect(t, "web1")
	root, _ := l.connect(t, "root")
	alice, _ := l.connect(t, "alice")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	dir := t.TempDir()
	admin, hostKey := keytest.Signer(t), keytest.Signer(t)
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(admin.PublicKey())))
	if err := os.WriteFile(filepath.Join(dir, "authorized_keys"), []byte(`roles="admin",name="root" `+line+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "policy.yaml"), []byte("rules:\n  - roles: [admin]\n    allow: [\"rpcutil.ping\"]\nadmin_roles: [admin]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	host, err := agents.NewHost(agents.HostOptions{Identity: "web1", Collective: collective, AuthorizedKeys: filepath.Join(dir, "authorized_keys"),
		Policy: filepath.Join(dir, "policy.yaml")})
	if err != nil {
		t.Fatal(err)
	}
	cfg := &agents.Config{Identity: "web1", Collective: collective, MaxRequestBytes: 64 << 10,
		MaxTTL: agents.Duration(10 * time.Minute), ClockSkew: agents.Duration(30 * time.Second), ActionTimeout: agents.Duration(time.Minute),
		MaxConcurrent: 8, RegistryTTL: agents.Duration(30 * time.Second), ShutdownTimeout: agents.Duration(5 * time.Second)}
	hctx, hcancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	ready := make(chan struct{})
	go func() {
		served <- agents.Serve(hctx, agents.ServeOptions{Conn: web1, Host: host, HostKey: hostKey, Audit: noAudit{}, Config: cfg, Ready: func() { close(ready) }})
	}()
	defer func() { hcancel(); <-served }()
	<-ready

	store, err := control.OpenStore(ctx, root, collective, 0)
	if err != nil {
		t.Fatal(err)
	}
	c, err := bus.NewClient(bus.ClientConfig{Conn: root, Collective: collective, Signer: admin, User: "root", HostKeys: known{"web1": hostKey.PublicKey()}})
	if err != nil {
		t.Fatal(err)
	}
	hosts := control.AskHosts(c, bus.Query{Targets: []string{"web1"}, Timeout: 5 * time.Second})
	var notices []string
	opts := control.UpdateOptions{Kind: control.KindLocks, Signer: admin, By: "root", TrustBase: func(*control.Signed) error { return nil },
		Notice: func(s string) { notices = append(notices, s) }}
	lock := func(id string) func(*control.Document) error {
		return func(d *control.Document) error {
			d.Locks = append(d.Locks, control.Lock{ID: id, Scope: control.Scope{Agent: "package"}, Reason: "incident", By: "root", At: d.Issued})
			return nil
		}
	}
	applied := func(seq uint64) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			states, _, err := hosts(ctx)
			if err == nil && len(states) == 1 {
				if sd, err := control.Open(states[0].Frames[control.KindLocks]); err == nil && sd.Doc.Seq == seq {
					return
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("web1 did not apply locks seq %d: %v %+v", seq, err, states)
			}
		}
	}
	opts.Edit = lock("L1")
	if _, err := store.Update(ctx, opts); err != nil {
		t.Fatal(err)
	}
	applied(1)

	// alice may not publish on the bucket; the broker does it for her.
	stream := "KV_" + control.Bucket(collective)
	key := "$KV." + control.Bucket(collective) + "." + control.KindLocks
	for i := 0; i < 70; i++ {
		if err := alice.PublishMsg(&nats.Msg{Subject: "$JS.API.STREAM.MSG.GET." + stream, Reply: key, Data: []byte(fmt.Sprintf(`{"seq":%d}`, 1+i%2))}); err != nil {
			t.Fatal(err)
		}
	}
	alice.Flush()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if e, err := kv(t, root, control.Bucket(collective)).Get(ctx, control.KindLocks); err == nil && e.Revision() > 70 {
			break // all 70 landed: the 64 kept revisions are the broker's JSON
		}
		if time.Now().After(deadline) {
			t.Fatal("the broker published nothing into the locks key")
		}
	}
	opts.Edit = lock("L2")
	if _, err := store.Update(ctx, opts); err == nil || !strings.Contains(err.Error(), "no locks document in the bucket's history") {
		t.Fatalf("without the hosts: %v", err)
	}
	opts.Hosts = hosts
	d, err := store.Update(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if d.Seq != 2 || len(d.Locks) != 2 || !strings.Contains(strings.Join(notices, "\n"), "is flooded") {
		t.Fatalf("published %+v; notices %q", d, notices)
	}
	applied(2)
}
