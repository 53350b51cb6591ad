package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/signetbus/signet/internal/keys"
	"github.com/signetbus/signet/internal/lab"
	"github.com/signetbus/signet/internal/testio"
)

// TestKeygenWritesWhereTheClientLooks: the key `signet keygen` writes by
// default is the key the client signs with by default, so the first
// `signet ping` after keygen finds it.
func TestKeygenWritesWhereTheClientLooks(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	env := map[string]string{"USER": "alice", "SIGNET_CONFIG": filepath.Join(home, "client.yaml")}
	os.WriteFile(env["SIGNET_CONFIG"], []byte("collective: lab\n"), 0o600)
	if code, stderr := runMain(t, env, "keygen"); code != ExitOK {
		t.Fatalf("keygen exit %d: %s", code, stderr)
	}
	cfg, err := loadClientConfig("", "", envMap(env))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(cfg.Key); err != nil {
		t.Fatalf("the client's default key %s is not the one keygen wrote: %v", cfg.Key, err)
	}
}

// TestClientFallsBackToSSHKey: an operator who keeps an ed25519 key in
// ~/.ssh (the client's old default) is still served, and told so.
func TestClientFallsBackToSSHKey(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	os.MkdirAll(filepath.Join(home, ".ssh"), 0o700)
	if _, err := keys.Generate(filepath.Join(home, ".ssh", "id_ed25519"), "alice@old", nil); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(home, "client.yaml"), []byte("collective: lab\n"), 0o600)
	cfg, err := loadClientConfig("", "", envMap(map[string]string{"SIGNET_CONFIG": filepath.Join(home, "client.yaml")}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Key != filepath.Join(home, ".ssh", "id_ed25519") || !strings.Contains(cfg.keyNote, "~/.config/signet/id_ed25519") {
		t.Fatalf("key %s, note %q", cfg.Key, cfg.keyNote)
	}
}

// TestClientConfigExpandsHomeEverywhere: `~/` works for every path key,
// not only key and known_hosts.
func TestClientConfigExpandsHomeEverywhere(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	path := filepath.Join(t.TempDir(), "client.yaml")
	os.WriteFile(path, []byte("apps: ~/apps\nruns: ~/runs\nnats: {creds: ~/nats.creds}\nenvironments:\n  dev: {apps: ~/dev-apps}\n"), 0o600)
	cfg, err := loadClientConfig(path, "", envMap(nil))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Apps != filepath.Join(home, "apps") || cfg.Runs != filepath.Join(home, "runs") || cfg.NATS.Creds != filepath.Join(home, "nats.creds") {
		t.Fatalf("apps %s runs %s creds %s", cfg.Apps, cfg.Runs, cfg.NATS.Creds)
	}
	cfg, err = loadClientConfig(path, "dev", envMap(nil))
	if err != nil || cfg.Apps != filepath.Join(home, "dev-apps") {
		t.Fatalf("dev apps %v %v", cfg, err)
	}
}

// TestRunLogNameFromAppPath: `signet deploy PATH/app.yaml VERSION` names
// its run log after the app, not after the raw path.
func TestRunLogNameFromAppPath(t *testing.T) {
	cfg := &ClientConfig{Runs: t.TempDir()}
	p, err := logPath(cfg, "", runName("apps/sub/middleware.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Dir(p) != cfg.Runs || !strings.HasPrefix(filepath.Base(p), "middleware-") {
		t.Fatalf("run log %s", p)
	}
	f, err := os.Create(p)
	if err != nil {
		t.Fatalf("run log cannot be created: %v", err)
	}
	f.Close()
}

// TestDeployWorkflowFirstHourErrors runs the mistakes a new operator
// makes against a real lab and checks each says what is wrong, before
// asking for anything, with the README's exit code.
func TestDeployWorkflowFirstHourErrors(t *testing.T) {
	l, err := lab.Start(context.Background(), lab.Options{Dir: t.TempDir(), Hosts: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Stop()
	dir := t.TempDir()
	app := filepath.Join(dir, "web.yaml")
	os.WriteFile(app, []byte("version: 1\nname: web\npackage: web\nservice: web\nhosts: [zone=nowhere]\nhaproxy: {backend: web, lb_filter: [role=lb]}\nhealth: {url: \"http://127.0.0.1:1/\"}\n"), 0o600)
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("version: 1\nname: web\npakage: web\n"), 0o600)
	env := map[string]string{"SIGNET_CONFIG": l.ClientConfig, "USER": "tester", "HOME": dir}
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"deploy", app, "1.0", "--plan"}, ExitUsage, "--env"},
		{[]string{"workflow", "run", filepath.Join(dir, "missing.yaml")}, ExitUsage, "missing.yaml"},
		{[]string{"deploy", filepath.Join(dir, "nosuch"), "1.0", "--plan", "--env", "dev"}, ExitUsage, "no app file"},
		{[]string{"deploy", bad, "1.0", "--plan", "--env", "dev"}, ExitUsage, "pakage"},
		{[]string{"deploy", app, "1.0", "--plan", "--env", "dev"}, ExitNoMatch, "no hosts matched"},
		{[]string{"deploy", app, "1.0", "--env", "dev", "--json", "--yes"}, ExitNoMatch, "no hosts matched"},
	} {
		code, stderr := runMain(t, env, c.args...)
		if code != c.code || !strings.Contains(stderr, c.want) || strings.Contains(stderr, "confirmation") {
			t.Errorf("signet %v: exit %d, want %d with %q:\n%s", c.args, code, c.code, c.want, stderr)
		}
	}
}

// TestUnknownHostCountedOnce: a host missing from known_hosts is reported
// once, as unknown host, the counts add up to the hosts, and the command
// does not wait out its timeout for it (the context below ends long
// before the 2m timeout; an interrupted ping would say so).
func TestUnknownHostCountedOnce(t *testing.T) {
	l, err := lab.Start(context.Background(), lab.Options{Dir: t.TempDir(), Hosts: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Stop()
	cfg, err := loadClientConfig(l.ClientConfig, "", envMap(nil))
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(cfg.KnownHosts)
	if err != nil {
		t.Fatal(err)
	}
	var keep []string
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, "web2 ") {
			keep = append(keep, line)
		}
	}
	os.WriteFile(cfg.KnownHosts, []byte(strings.Join(keep, "\n")), 0o644)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	code := Main(ctx, []string{"ping", "-t", "2m"}, IO{In: strings.NewReader(""), Out: &out, Err: &errb, Getenv: envMap(map[string]string{"SIGNET_CONFIG": l.ClientConfig, "USER": "tester"})})
	if code != ExitFailed {
		t.Errorf("exit %d, want %d", code, ExitFailed)
	}
	if n := strings.Count("\n"+out.String(), "\nweb2\t"); n != 1 || !strings.Contains(out.String(), "unknown host") {
		t.Errorf("web2 reported %d times:\n%s", n, out.String())
	}
	if !strings.Contains(errb.String(), "1 ok, 1 failed, 0 no response") || strings.Contains(errb.String(), "interrupted") {
		t.Errorf("summary:\n%s", errb.String())
	}
	if !strings.Contains(out.String()+errb.String(), "--print-host-key") {
		t.Errorf("the fix is not named:\n%s%s", out.String(), errb.String())
	}
}

// TestDemoKeepSelfCommand: the commands `signet demo --keep` prints run
// for whoever started it: `go run` users get `go run ./cmd/signet`, not a
// `signet` their shell does not find.
func TestDemoKeepSelfCommand(t *testing.T) {
	repo := t.TempDir()
	os.MkdirAll(filepath.Join(repo, "cmd", "signet"), 0o755)
	os.WriteFile(filepath.Join(repo, "go.mod"), []byte("module x\n"), 0o644)
	noSignet := func(string) (string, error) { return "", os.ErrNotExist }
	goRun := "/tmp/go-build123/b001/exe/signet"
	for _, c := range []struct{ exe, wd, want string }{
		{goRun, repo, "go run ./cmd/signet"},
		{goRun, filepath.Join(repo, "cmd"), "go run " + filepath.Join(repo, "cmd", "signet")},
		{goRun, t.TempDir(), goRun},
		{"/opt/signet/bin/signet", repo, "/opt/signet/bin/signet"},
	} {
		if got := selfCommand(c.exe, c.wd, noSignet); got != c.want {
			t.Errorf("exe %s in %s: %q, want %q", c.exe, c.wd, got, c.want)
		}
	}
	bin := filepath.Join(t.TempDir(), "signet")
	os.WriteFile(bin, nil, 0o755)
	if got := selfCommand(bin, repo, func(string) (string, error) { return bin, nil }); got != "signet" {
		t.Errorf("signet on PATH: %q", got)
	}
}

// knownHostsAs adds to the client's known_hosts the key of host under the
// identity as: a host the client trusts that never runs.
func knownHostsAs(t *testing.T, clientConfig, host, as string) {
	t.Helper()
	cfg, err := loadClientConfig(clientConfig, "", envMap(nil))
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(cfg.KnownHosts)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, host+" "); ok {
			b = append(b, []byte(as+" "+rest+"\n")...)
		}
	}
	if err := os.WriteFile(cfg.KnownHosts, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestHAProxyState: the demo prints the states docs/demo.md shows, not a
// health check's moving counter.
func TestHAProxyState(t *testing.T) {
	for in, want := range map[string]string{"UP": "UP", "DRAIN 1/2": "DRAIN", "UP 1/3": "UP", "DOWN (agent)": "DOWN (agent)", "MAINT": "MAINT", "": ""} {
		if got := haproxyState(in); got != want {
			t.Errorf("%q: %q, want %q", in, got, want)
		}
	}
}

// TestLabNamesSignetAsRun: the commands `signet lab` prints name signet as
// it was started (here a test binary: its path), never a fixed
// `go run ./cmd/signet` or a `signet` that may not exist.
func TestLabNamesSignetAsRun(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var out bytes.Buffer
	errb := &testio.Buffer{}
	done := make(chan int)
	go func() {
		done <- Main(ctx, []string{"lab", "--hosts", "1", "--dir", t.TempDir()}, IO{In: strings.NewReader(""), Out: &out, Err: errb, Getenv: envMap(nil)})
	}()
	for i := 0; i < 200 && !strings.Contains(errb.String(), "Ctrl-C stops the lab"); i++ {
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	<-done
	exe, _ := os.Executable()
	wd, _ := os.Getwd()
	want := selfCommand(exe, wd, func(string) (string, error) { return "", os.ErrNotExist }) + " ping"
	if !strings.Contains(errb.String(), "  "+want+"\n") {
		t.Fatalf("want %q in:\n%s", want, errb.String())
	}
}
