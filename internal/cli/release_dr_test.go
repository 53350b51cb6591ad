package cli

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/signetbus/signet/internal/keys"
	"github.com/signetbus/signet/internal/lab"
	"github.com/signetbus/signet/workflows/release"
)

// TestReleaseChecksDRFirst runs `signet release --env prod` where the
// prod profile sets release.require_done_in: dr, with prod and DR each a
// real lab (broker and hosts) reached through its own profile: refused
// while DR has no record of the manifest; --skip-dr-check needs a reason;
// with a record signed by the operator on DR's broker the check passes
// (the release then stops at its first deploy: these labs run no package
// plugin, which is not what this test is about).
func TestReleaseChecksDRFirst(t *testing.T) {
	prod, err := lab.Start(context.Background(), lab.Options{Dir: t.TempDir(), Hosts: 1, Collective: "prod"})
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Stop()
	dr, err := lab.Start(context.Background(), lab.Options{Dir: t.TempDir(), Hosts: 1, Collective: "dr"})
	if err != nil {
		t.Fatal(err)
	}
	defer dr.Stop()
	dir := t.TempDir()
	// DR's lab has its own keys: the operator of prod signs for both here.
	cfg := filepath.Join(dir, "client.yaml")
	opKey := filepath.Join(prod.Dir, "operator_key")
	os.WriteFile(cfg, []byte(`user: operator
key: `+opKey+`
known_hosts: `+filepath.Join(prod.Dir, "known_hosts")+`
environments:
  prod:
    collective: prod
    nats: {urls: ["`+prod.Broker.ClientURL()+`"]}
    release:
      require_done_in: dr
  dr:
    collective: dr
    nats: {urls: ["`+dr.Broker.ClientURL()+`"]}
`), 0o600)
	ticket := filepath.Join(dir, "release.txt")
	os.WriteFile(ticket, []byte("Spring release\nweb 1.4.3\n"), 0o600)
	env := map[string]string{"SIGNET_CONFIG": cfg, "USER": "operator", "HOME": dir}

	code, stderr := runMain(t, env, "release", ticket, "--env", "prod", "--yes")
	if code != ExitFailed || !strings.Contains(stderr, "have not finished in dr: no release of them is recorded there") {
		t.Fatalf("prod before dr: exit %d, stderr %q", code, stderr)
	}
	for _, args := range [][]string{
		{"--skip-dr-check"},
		{"--reason", "dr is down"},
	} {
		code, stderr := runMain(t, env, append([]string{"release", ticket, "--env", "prod", "--yes"}, args...)...)
		if code != ExitUsage || !strings.Contains(stderr, "--skip-dr-check") {
			t.Errorf("release %v: exit %d, stderr %q: want a usage error", args, code, stderr)
		}
	}
	code, stderr = runMain(t, env, "release", ticket, "--env", "dr", "--yes", "--skip-dr-check", "--reason", "x")
	if code != ExitUsage || !strings.Contains(stderr, "sets no require_done_in") {
		t.Errorf("skip where no check is configured: exit %d, stderr %q", code, stderr)
	}

	// The record a finished DR release leaves, signed by the operator.
	signer, err := keys.LoadSigner(opKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(dr.Broker.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	recs, err := release.NewKVRecords(context.Background(), js, signer, nil)
	if err != nil {
		t.Fatal(err)
	}
	items := []release.Item{{App: "web", Version: "1.4.3"}}
	if err := recs.Put(context.Background(), &release.Record{Manifest: release.ManifestDigest(items), Env: "dr",
		Title: "Spring release", User: "operator", Apps: []release.RecordItem{{App: "web", Version: "1.4.3"}}}); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	code = Main(context.Background(), []string{"release", ticket, "--env", "prod", "--yes"},
		IO{In: strings.NewReader(""), Out: &out, Err: &out, Getenv: envMap(env)})
	if !strings.Contains(out.String(), "dr check passed: the same 1 apps finished in dr") {
		t.Fatalf("prod after dr: exit %d, output:\n%s", code, out.String())
	}
}
