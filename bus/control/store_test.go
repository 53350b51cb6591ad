package control_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"golang.org/x/crypto/ssh"

	"github.com/signetbus/signet/bus/control"
	"github.com/signetbus/signet/internal/broker/brokertest"
)

func newSigner(t *testing.T) ssh.Signer {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestUpdateSkipsDocumentsFromUntrustedKeys: a broker user who overwrites
// the bucket with a document signed by their own key (empty, with a huge
// sequence number) must not make the admin's next publish drop entries.
func TestUpdateSkipsDocumentsFromUntrustedKeys(t *testing.T) {
	s := brokertest.Start(t)
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ctx := context.Background()
	store, err := control.OpenStore(ctx, nc, "t", 0)
	if err != nil {
		t.Fatal(err)
	}
	admin, mallory := newSigner(t), newSigner(t)
	trust := func(sd *control.Signed) error {
		if !bytes.Equal(sd.KeyBlob, admin.PublicKey().Marshal()) {
			return fmt.Errorf("signed by %s", sd.Fingerprint())
		}
		return nil
	}
	add := func(fp string) func(*control.Document) error {
		return func(d *control.Document) error {
			d.Revoked = append(d.Revoked, control.Revocation{Key: fp, Reason: "r", By: "bob", At: d.Issued})
			return nil
		}
	}
	opts := control.UpdateOptions{Kind: control.KindRevocations, Signer: admin, By: "bob", TrustBase: trust, Edit: add("SHA256:one")}
	if _, err := store.Update(ctx, opts); err != nil {
		t.Fatal(err)
	}
	forged, err := control.Sign(rand.Reader, mallory, &control.Document{Kind: control.KindRevocations, Collective: "t", Seq: 1 << 40, Issued: time.Now().UnixMilli()})
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Put(ctx, control.KindRevocations, forged); err != nil {
		t.Fatal(err)
	}
	if err := store.Put(ctx, control.KindRevocations, []byte("garbage")); err != nil {
		t.Fatal(err)
	}
	opts.Edit = add("SHA256:two")
	d, err := store.Update(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if d.Seq != 2 || len(d.Revoked) != 2 || d.Revoked[0].Key != "SHA256:one" {
		t.Fatalf("built on the forged document: seq %d, %+v", d.Seq, d.Revoked)
	}
	// With nothing trusted left in the history (and no hosts to ask, see
	// agents TestTwoAdminsRaceUnderFlood), the command refuses.
	for i := 0; i <= int(control.BucketConfig("t").History); i++ {
		if err := store.Put(ctx, control.KindRevocations, forged); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := store.Update(ctx, opts); err == nil || !strings.Contains(err.Error(), "no revocations document in the bucket's history") {
		t.Fatalf("update over a history of forgeries: %v", err)
	}
}

func TestScopeAndMatch(t *testing.T) {
	serial := uint64(7)
	d := &control.Document{Kind: control.KindRevocations, Revoked: []control.Revocation{{Key: "SHA256:k"}, {KeyID: "alice"}, {Serial: &serial, CA: "SHA256:ca"}}}
	for _, c := range []struct {
		s    control.Subject
		want bool
	}{
		{control.Subject{Key: "SHA256:k"}, true},
		{control.Subject{Key: "SHA256:x"}, false},
		{control.Subject{Key: "SHA256:x", Cert: true, KeyID: "alice"}, true},
		{control.Subject{Key: "SHA256:x", KeyID: "alice"}, false}, // not a certificate
		{control.Subject{Key: "SHA256:x", Cert: true, Serial: 7, CA: "SHA256:ca"}, true},
		{control.Subject{Key: "SHA256:x", Cert: true, Serial: 7, CA: "SHA256:other"}, false},
	} {
		if _, got := d.Match(c.s); got != c.want {
			t.Errorf("%+v: revoked %v, want %v", c.s, got, c.want)
		}
	}
	facts := map[string]string{"env": "prod"}
	for _, c := range []struct {
		s    control.Scope
		want bool
	}{
		{control.Scope{All: true}, true}, {control.Scope{Agent: "package"}, true}, {control.Scope{Agent: "service"}, false},
		{control.Scope{Fact: "env=prod"}, true}, {control.Scope{Fact: "env=dev"}, false}, {control.Scope{Fact: "app=shop"}, false},
	} {
		if got := c.s.Matches("package", facts); got != c.want {
			t.Errorf("%+v: %v, want %v", c.s, got, c.want)
		}
	}
	if err := (control.Scope{All: true, Agent: "x"}).Check(); err == nil {
		t.Error("two scopes accepted")
	}
}
