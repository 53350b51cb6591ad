package release

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/crypto/ssh"

	"github.com/signetbus/signet/internal/broker/brokertest"
	"github.com/signetbus/signet/internal/keys/keytest"
)

// The DR check tests keep the records on real embedded brokers, one per
// environment, as production and DR run them.

func recordsOn(t *testing.T, url string, signer ssh.Signer, trusted ...ssh.PublicKey) *KVRecords {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewKVRecords(context.Background(), js, signer, trusted)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// drAndProd are the two brokers and alice's view of each.
type drAndProd struct {
	alice    ssh.Signer
	dr, prod *KVRecords
	drURL    string
}

func newDRAndProd(t *testing.T) *drAndProd {
	alice := keytest.Signer(t)
	drURL := brokertest.Start(t).ClientURL()
	return &drAndProd{alice: alice, drURL: drURL,
		dr: recordsOn(t, drURL, alice), prod: recordsOn(t, brokertest.Start(t).ClientURL(), alice)}
}

// prodRelease is a release of threeApps to prod that requires dr first.
func (e *drAndProd) prodRelease(t *testing.T) *fixture {
	f := newFixture(t, threeApps)
	f.opts.Ref = "jira:OPS-7"
	f.opts.Records, f.opts.RequireDoneIn, f.opts.DoneIn = e.prod, "dr", e.dr
	return f
}

func (e *drAndProd) releaseDR(t *testing.T, manifest string) {
	t.Helper()
	f := newFixture(t, manifest)
	f.opts.Env, f.opts.Records, f.opts.Ref = "dr", e.dr, "jira:OPS-7"
	if err := Run(context.Background(), f.opts); err != nil {
		t.Fatalf("dr release: %v", err)
	}
	if !strings.Contains(f.out.String(), "recorded as finished on dr (manifest sha256 ") {
		t.Fatalf("the dr release did not say it recorded itself:\n%s", f.out)
	}
}

// TestProdWaitsForDR: a production release whose config requires DR first
// is refused, before anything is shown, deployed or posted, until the same
// manifest finished in DR; then it runs, says what it found, and records
// itself on production's broker.
func TestProdWaitsForDR(t *testing.T) {
	e := newDRAndProd(t)
	f := e.prodRelease(t)
	err := Run(context.Background(), f.opts)
	if err == nil || !strings.Contains(err.Error(), "have not finished in dr: no release of them is recorded there") ||
		!strings.Contains(err.Error(), "--skip-dr-check --reason TEXT") {
		t.Fatalf("prod before dr: got %v, want a refusal naming dr and the way out", err)
	}
	if calls := f.deploy.Calls(); len(calls) != 0 {
		t.Fatalf("refused release deployed: %q", calls)
	}
	if n := len(f.chat.Texts()) + len(f.jira.Comments()) + len(f.mail.Messages()); n != 0 {
		t.Fatalf("refused release posted %d messages", n)
	}

	// DR with another version of api does not count.
	e.releaseDR(t, "web 1.0\napi 2.1\ndb 3.0\n")
	f = e.prodRelease(t)
	if err := Run(context.Background(), f.opts); err == nil || !strings.Contains(err.Error(), "have not finished in dr") {
		t.Fatalf("prod after dr released other versions: got %v, want a refusal", err)
	}

	e.releaseDR(t, threeApps)
	f = e.prodRelease(t)
	if err := Run(context.Background(), f.opts); err != nil {
		t.Fatalf("prod after dr: %v\n%s", err, f.out)
	}
	if !strings.Contains(f.out.String(), "dr check passed: the same 3 apps finished in dr on ") {
		t.Errorf("prod output does not show the dr check:\n%s", f.out)
	}
	rec, pub, err := e.prod.Get(context.Background(), ManifestDigest([]Item{{"web", "1.0"}, {"api", "2.0"}, {"db", "3.0"}}))
	if err != nil {
		t.Fatalf("prod record: %v", err)
	}
	if rec.Env != "prod" || rec.Ticket != "jira:OPS-7" || rec.User != "alice" || rec.DRCheckSkipped != "" ||
		ssh.FingerprintSHA256(pub) != ssh.FingerprintSHA256(e.alice.PublicKey()) {
		t.Errorf("prod record %+v signed by %s", rec, ssh.FingerprintSHA256(pub))
	}
}

// TestDRRecordsTheBrokerCannotForge: someone with a broker account writes
// records into DR's bucket: one signed by their own key, one of the same
// manifest that finished in dev (a real record, copied), and one stored
// under another manifest's key. Each is refused, saying why.
func TestDRRecordsTheBrokerCannotForge(t *testing.T) {
	e := newDRAndProd(t)
	digest := ManifestDigest([]Item{{"web", "1.0"}, {"api", "2.0"}, {"db", "3.0"}})
	rec := &Record{Manifest: digest, Env: "dr", Title: "Spring release", User: "mallory",
		Apps: []RecordItem{{"web", "1.0"}, {"api", "2.0"}, {"db", "3.0"}}}

	mallory := recordsOn(t, e.drURL, keytest.Signer(t))
	if err := mallory.Put(context.Background(), rec); err != nil {
		t.Fatal(err)
	}
	f := e.prodRelease(t)
	err := Run(context.Background(), f.opts)
	if !errors.Is(err, ErrRecordSignature) || !strings.Contains(err.Error(), "neither this operator's key nor in resume_keys") {
		t.Fatalf("record signed by an untrusted key: got %v", err)
	}

	dev := *rec
	dev.Env, dev.User = "dev", "alice"
	if err := e.dr.Put(context.Background(), &dev); err != nil {
		t.Fatal(err)
	}
	f = e.prodRelease(t)
	if err := Run(context.Background(), f.opts); err == nil || !strings.Contains(err.Error(), `says it finished in "dev", not dr`) {
		t.Fatalf("record of a dev release: got %v", err)
	}

	// A genuine record of another manifest, stored under this one's key.
	other := *rec
	other.Manifest, other.Apps = ManifestDigest([]Item{{"web", "0.9"}}), []RecordItem{{"web", "0.9"}}
	b, err := SealRecord(e.alice, &other)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.dr.kv.Put(context.Background(), "m_"+digest, b); err != nil {
		t.Fatal(err)
	}
	f = e.prodRelease(t)
	if err := Run(context.Background(), f.opts); !errors.Is(err, ErrRecordSignature) || !strings.Contains(err.Error(), "is stored under manifest") {
		t.Fatalf("record moved to another manifest's key: got %v", err)
	}
	if calls := f.deploy.Calls(); len(calls) != 0 {
		t.Fatalf("refused release deployed: %q", calls)
	}
}

// TestSkipDRCheck: --skip-dr-check --reason runs without DR, shows the
// reason before confirmation, posts it to chat, writes it in the log that
// is mailed and commented, and keeps it in production's signed record.
func TestSkipDRCheck(t *testing.T) {
	e := newDRAndProd(t)
	f := e.prodRelease(t)
	const reason = "dr site down for the storage migration, CAB-1234"
	f.opts.SkipDoneCheck = reason
	if err := Run(context.Background(), f.opts); err != nil {
		t.Fatal(err)
	}
	chat := strings.Join(f.chat.Texts(), "\n")
	if !strings.Contains(chat, "dr check SKIPPED for the release on prod by alice: Spring release (reason: "+reason+")") {
		t.Errorf("chat does not carry the skip:\n%s", chat)
	}
	head, _, _ := strings.Cut(f.out.String(), "type yes")
	if !strings.Contains(head, "dr check SKIPPED by alice: "+reason) {
		t.Errorf("the skip is not shown before confirmation:\n%s", head)
	}
	if c := f.jira.Comments(); len(c) != 1 || !strings.Contains(c[0], reason) {
		t.Errorf("ticket comment lacks the reason: %q", c)
	}
	if m := f.mail.Messages(); len(m) != 1 || !strings.Contains(m[0].Body(t), reason) {
		t.Errorf("mailed log lacks the reason")
	}
	rec, _, err := e.prod.Get(context.Background(), ManifestDigest([]Item{{"web", "1.0"}, {"api", "2.0"}, {"db", "3.0"}}))
	if err != nil || rec.DRCheckSkipped != reason {
		t.Fatalf("prod record: %+v, %v: want the reason kept", rec, err)
	}

	// There is nothing to skip where no check is configured.
	f = newFixture(t, threeApps)
	f.opts.SkipDoneCheck = reason
	if err := Run(context.Background(), f.opts); err == nil || !strings.Contains(err.Error(), "sets no require_done_in") {
		t.Fatalf("skip without a check: got %v", err)
	}
	f = e.prodRelease(t)
	f.opts.SkipDoneCheck = "two\nlines"
	if err := Run(context.Background(), f.opts); err == nil || !strings.Contains(err.Error(), "--reason: expected one line") {
		t.Fatalf("multi-line reason: got %v", err)
	}
}
