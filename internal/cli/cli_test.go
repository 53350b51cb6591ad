package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/signetbus/signet/bus"
)

func envMap(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestClientConfigProfilesAndOverrides(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "client.yaml")
	os.WriteFile(path, []byte(`collective: prod
key: keys/prod_key
known_hosts: known_hosts
nats: {urls: ["nats://prod:4222"]}
timeout: 20s
environments:
  dev:
    collective: dev
    key: keys/dev_key
    nats: {urls: ["nats://dev:4222"]}
`), 0o600)
	cfg, err := loadClientConfig(path, "", envMap(nil))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Collective != "prod" || cfg.Key != filepath.Join(dir, "keys/prod_key") || cfg.Timeout.D() != 20*time.Second || cfg.TTL.D() != time.Minute {
		t.Fatalf("base config %+v", cfg)
	}
	cfg, err = loadClientConfig(path, "dev", envMap(nil))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Collective != "dev" || cfg.Key != filepath.Join(dir, "keys/dev_key") || cfg.NATS.URLs[0] != "nats://dev:4222" || cfg.Timeout.D() != 20*time.Second {
		t.Fatalf("dev profile %+v", cfg)
	}
	cfg, err = loadClientConfig("", "", envMap(map[string]string{"SIGNET_CONFIG": path, "SIGNET_ENV": "dev", "SIGNET_NATS_URL": "nats://a:1,nats://b:2", "SIGNET_KEY": "agent"}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Collective != "dev" || cfg.Key != "agent" || !reflect.DeepEqual(cfg.NATS.URLs, []string{"nats://a:1", "nats://b:2"}) {
		t.Fatalf("env overrides %+v", cfg)
	}
	if _, err := loadClientConfig(path, "staging", envMap(nil)); err == nil || !strings.Contains(err.Error(), `no environment "staging"`) || !strings.Contains(err.Error(), "(profiles: dev)") {
		t.Fatalf("unknown profile: %v", err)
	}
	noProfiles := filepath.Join(dir, "plain.yaml")
	os.WriteFile(noProfiles, []byte("collective: lab\n"), 0o600)
	if cfg, err := loadClientConfig(noProfiles, "lab", envMap(nil)); err != nil || cfg.Collective != "lab" {
		t.Fatalf("--env without profiles should only name the deploy env: %+v %v", cfg, err)
	}
	os.WriteFile(path, []byte("colective: typo\n"), 0o600)
	if _, err := loadClientConfig(path, "", envMap(nil)); err == nil || !strings.Contains(err.Error(), path+":1: colective: unknown key") {
		t.Fatalf("unknown key: %v", err)
	}
	if _, err := loadClientConfig(filepath.Join(dir, "missing.yaml"), "", envMap(nil)); err == nil {
		t.Fatal("an explicit missing config was accepted")
	}
}

func TestParseParams(t *testing.T) {
	p, err := parseParams([]string{"package=middleware", "version=1.4.2", "note=a=b"})
	if err != nil || p["package"] != "middleware" || p["note"] != "a=b" {
		t.Fatalf("%v %v", p, err)
	}
	for _, bad := range [][]string{{"novalue"}, {"=x"}, {"a=1", "a=2"}} {
		if _, err := parseParams(bad); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}

func TestQueryFlags(t *testing.T) {
	cfg := &ClientConfig{}
	cfg.defaults(envMap(nil))
	q := &queryFlags{identity: []string{"web1", "web2"}}
	query, err := q.query(cfg, "rpcutil", "ping", nil)
	if err != nil || !reflect.DeepEqual(query.Targets, []string{"web1", "web2"}) {
		t.Fatalf("exact -I should address hosts directly: %+v %v", query, err)
	}
	q = &queryFlags{identity: []string{"/^web/"}, with: []string{"web zone=a"}, fact: []string{"env=prod"}}
	query, err = q.query(cfg, "rpcutil", "ping", nil)
	if err != nil || len(query.Targets) != 0 {
		t.Fatalf("%+v %v", query, err)
	}
	want := bus.Filter{Identity: []string{"/^web/"}, Fact: []string{"env=prod", "zone=a"}, Class: []string{"web"}}
	if !reflect.DeepEqual(query.Filter, want) {
		t.Fatalf("filter %+v, want %+v", query.Filter, want)
	}
	q = &queryFlags{fact: []string{"zone"}}
	if _, err := q.query(cfg, "rpcutil", "ping", nil); err == nil {
		t.Fatal("a fact filter without an operator was accepted")
	}
}

func TestExitCodes(t *testing.T) {
	cases := []struct {
		err  error
		code int
		out  string
	}{
		{nil, ExitOK, ""},
		{&partialFailure{}, ExitFailed, ""},
		{usageErrorf("bad flag"), ExitUsage, "signet: bad flag\n"},
		{fmt.Errorf("discover: %w", bus.ErrNoMatch), ExitNoMatch, "signet: discover: bus: no host matched\n"},
		{withHint(errors.New("connect to broker: refused"), "start one with signet broker"), ExitFailed, "signet: connect to broker: refused\nhint: start one with signet broker\n"},
	}
	for _, c := range cases {
		var buf bytes.Buffer
		if got := exitCode(c.err, &buf, "signet"); got != c.code || buf.String() != c.out {
			t.Errorf("%v: code %d output %q, want %d %q", c.err, got, buf.String(), c.code, c.out)
		}
	}
}

func TestMainUsageErrors(t *testing.T) {
	var out, errb bytes.Buffer
	io := IO{In: strings.NewReader(""), Out: &out, Err: &errb, Getenv: envMap(nil)}
	if code := Main(context.Background(), []string{"rpc", "onlyagent"}, io); code != ExitUsage {
		t.Fatalf("code %d, stderr %s", code, errb.String())
	}
	if code := Main(context.Background(), []string{"deploy", "app", "1.0", "--output", "xml"}, io); code != ExitUsage {
		t.Fatalf("code %d, stderr %s", code, errb.String())
	}
}
