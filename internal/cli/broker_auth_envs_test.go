package cli

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/signetbus/signet/internal/broker"
)

// TestBrokerInitEnvironments: `signet broker init` takes several
// collectives, the first the broker's own, and a JetStream domain for
// those behind a leafnode; a domain for a collective it does not name, for
// its own collective, or not of the form C=D is a usage error (exit 2)
// that writes nothing.
func TestBrokerInitEnvironments(t *testing.T) {
	dir := t.TempDir()
	init := func(auth string, args ...string) (int, string) {
		var out strings.Builder
		code := Main(context.Background(), append([]string{"broker", "init", auth, "--client", "alice", "--no-tls"}, args...),
			IO{In: strings.NewReader(""), Out: &out, Err: &out, Getenv: func(k string) string { return map[string]string{"HOME": dir}[k] }})
		return code, out.String()
	}
	for name, args := range map[string][]string{
		"domain of a collective not named": {"--collective", "prod", "--jetstream-domain", "dr=dr"},
		"domain of its own collective":     {"--collective", "prod", "--collective", "dr", "--jetstream-domain", "prod=hub"},
		"not C=D":                          {"--collective", "prod", "--collective", "dr", "--jetstream-domain", "dr"},
		"bad domain":                       {"--collective", "prod", "--collective", "dr", "--jetstream-domain", "dr=d.r"},
		"collective twice":                 {"--collective", "prod", "--collective", "prod"},
	} {
		auth := filepath.Join(dir, strings.ReplaceAll(name, " ", "_"))
		if code, out := init(auth, args...); code != 2 {
			t.Errorf("%s: exit %d, want 2 (usage)\n%s", name, code, out)
		}
		if _, err := os.Stat(broker.AuthConfigPath(auth)); err == nil {
			t.Errorf("%s: wrote %s", name, broker.AuthConfigPath(auth))
		}
	}
	auth := filepath.Join(dir, "ok")
	code, out := init(auth, "--collective", "prod", "--collective", "stage", "--collective", "dr", "--jetstream-domain", "dr=dr")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, out)
	}
	for _, want := range []string{"signet broker --auth " + auth + " --collective prod --collective stage\n",
		"collective dr is reached over a leafnode in JetStream domain dr"} {
		if !strings.Contains(out, want) {
			t.Errorf("init does not say %q:\n%s", want, out)
		}
	}
	conf, err := os.ReadFile(broker.AuthConfigPath(auth))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"stage.agent.*"`, `"$JS.API.STREAM.INFO.KV_signet_registry_stage"`, `"dr.agent.*"`,
		`"$JS.dr.API.STREAM.INFO.KV_signet_registry_dr"`, `"$JS.dr.API.$KV.signet_runs.>"`, "collective prod, stage, dr (JetStream domain dr, over a leafnode)"} {
		if !strings.Contains(string(conf), want) {
			t.Errorf("auth.conf lacks %s", want)
		}
	}
}
