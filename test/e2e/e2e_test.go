// Package e2e runs the real signet and signetd binaries as separate
// processes against a real embedded nats-server, with testscript: each
// script in testdata starts its own broker and fleet.
package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rogpeppe/go-internal/testscript"

	"github.com/signetbus/signet/bus"
	"github.com/signetbus/signet/internal/broker"
	"github.com/signetbus/signet/internal/cli"
	"github.com/signetbus/signet/internal/keys"
	"github.com/signetbus/signet/internal/metrics/prom"
	"github.com/signetbus/signet/internal/signetd"
	"github.com/signetbus/signet/internal/stage"
	"github.com/signetbus/signet/internal/stage/stagetest"
)

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"signet": func() { os.Exit(cli.Main(context.Background(), os.Args[1:], cli.StdIO())) },
		"signetd": func() {
			stdio := signetd.StdIO()
			stdio.Metrics = prom.Export // as cmd/signetd does
			os.Exit(signetd.Main(context.Background(), os.Args[1:], stdio))
		},
	})
}

func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir:   "testdata",
		Setup: setup,
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"fleet":    cmdFleet,
			"waitfor":  cmdWaitFor,
			"exitcode": cmdExitCode,
			"freeport": cmdFreePort,
			"stage":    cmdStage,
			"backends": cmdBackends,
			"httpget":  cmdHTTPGet,
		},
		Condition:           condition,
		RequireExplicitExec: true,
	})
}

// condition knows [stage]: every backend the `stage` command starts is
// real on this machine (dpkg and apt as root, runit, haproxy,
// prometheus-alertmanager; CI installs them). `backends` logs why not.
func condition(cond string) (bool, error) {
	if cond != "stage" {
		return false, fmt.Errorf("unknown condition %q", cond)
	}
	for _, v := range stage.Detect(false) {
		if !strings.HasPrefix(v, "real") {
			return false, nil
		}
	}
	return true, nil
}

// backends logs, per plugin, whether the `stage` command's backend is real
// here and, when not, why.
func cmdBackends(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 0 {
		ts.Fatalf("usage: backends")
	}
	for _, k := range []string{stage.BackendPackage, stage.BackendService, stage.BackendHAProxy, stage.BackendMaintenance} {
		ts.Logf("%s: %s", k, stage.Detect(false)[k])
	}
}

// setup starts a broker for the script and points signet at the files
// `fleet` writes.
func setup(env *testscript.Env) error {
	s, err := broker.Start(broker.Config{Port: -1, StoreDir: filepath.Join(env.WorkDir, ".broker")})
	if err != nil {
		return err
	}
	env.Defer(func() { s.Shutdown(); s.WaitForShutdown() })
	env.Setenv("NATS_URL", s.ClientURL())
	env.Setenv("SIGNET_CONFIG", filepath.Join(env.WorkDir, "client.yaml"))
	env.Setenv("HOME", env.WorkDir)
	env.Setenv("USER", "alice")
	env.Setenv("BIG", strings.Repeat("x", 9000))
	return nil
}

// fleet N [ROLE] writes an operator key trusted with ROLE (default admin),
// N host configs webN.yaml with keys, zone a/b/c by number and env=lab,
// a policy (policy.yaml), known_hosts and client.yaml.
func cmdFleet(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 1 {
		ts.Fatalf("usage: fleet N [ROLE]")
	}
	n, err := strconv.Atoi(args[0])
	ts.Check(err)
	role := "admin"
	if len(args) > 1 {
		role = args[1]
	}
	work := ts.Getenv("WORK")
	p := func(s string) string { return filepath.Join(work, s) }
	_, err = keys.Generate(p("op_key"), "alice@bastion", nil)
	ts.Check(err)
	pub, err := os.ReadFile(p("op_key.pub"))
	ts.Check(err)
	ts.Check(os.WriteFile(p("authorized_keys"), []byte(fmt.Sprintf("roles=%q,name=\"alice\" %s", role, pub)), 0o600))
	if _, err := os.Stat(p("policy.yaml")); err != nil {
		ts.Check(os.WriteFile(p("policy.yaml"), []byte("rules:\n  - name: admin-all\n    roles: [admin]\n    allow: [\"*\"]\n"), 0o600))
	}
	var known strings.Builder
	for i := 1; i <= n; i++ {
		id := fmt.Sprintf("web%d", i)
		hk, err := keys.LoadHostKey(p(id + ".key"))
		ts.Check(err)
		known.WriteString(keys.FormatKnownHost(id, hk.PublicKey()) + "\n")
		cfg := fmt.Sprintf(`identity: %s
collective: e2e
nats:
  urls: [%q]
host_key: %s
authorized_keys: %s
policy: %s
audit_log: %s
facts:
  zone: %c
  env: lab
classes: [web]
registry_ttl: 30s
max_request_bytes: 8192
plugins:
  health: {}
`, id, ts.Getenv("NATS_URL"), p(id+".key"), p("authorized_keys"), p("policy.yaml"), p(id+".audit.jsonl"), 'a'+rune((i-1)%3))
		ts.Check(os.WriteFile(p(id+".yaml"), []byte(cfg), 0o600))
	}
	ts.Check(os.WriteFile(p("known_hosts"), []byte(known.String()), 0o644))
	client := fmt.Sprintf("collective: e2e\nkey: op_key\nknown_hosts: known_hosts\nnats:\n  urls: [%q]\ntimeout: 5s\ndiscovery_timeout: 1s\n", ts.Getenv("NATS_URL"))
	ts.Check(os.WriteFile(p("client.yaml"), []byte(client), 0o600))
}

// waitfor N [COLLECTIVE [URL]] waits until N responders of COLLECTIVE
// (default e2e) are in the registry of the broker at URL (default
// $NATS_URL), waiting for the broker to come up too.
func cmdWaitFor(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 1 || len(args) > 3 {
		ts.Fatalf("usage: waitfor N [COLLECTIVE [URL]]")
	}
	n, err := strconv.Atoi(args[0])
	ts.Check(err)
	collective, url := "e2e", ts.Getenv("NATS_URL")
	if len(args) > 1 {
		collective = args[1]
	}
	if len(args) > 2 {
		url = args[2]
	}
	deadline := time.Now().Add(30 * time.Second)
	nc, err := nats.Connect(url)
	for err != nil && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		nc, err = nats.Connect(url)
	}
	ts.Check(err)
	defer nc.Close()
	got := 0
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		if reg, err := bus.OpenRegistry(ctx, nc, collective); err == nil {
			if l, err := reg.List(ctx); err == nil {
				got = len(l)
			}
		}
		cancel()
		if got == n {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	ts.Fatalf("%d responders registered, want %d", got, n)
}

// exitcode N PROG ARGS... runs PROG and requires exit status N; its output
// is logged.
func cmdExitCode(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: exitcode N PROG [ARGS...]")
	}
	want, err := strconv.Atoi(args[0])
	ts.Check(err)
	path := ""
	for _, dir := range filepath.SplitList(ts.Getenv("PATH")) {
		if st, err := os.Stat(filepath.Join(dir, args[1])); err == nil && !st.IsDir() {
			path = filepath.Join(dir, args[1])
			break
		}
	}
	if path == "" {
		ts.Fatalf("%s not found in PATH", args[1])
	}
	cmd := exec.Command(path, args[2:]...)
	cmd.Dir = ts.Getenv("WORK")
	var env []string
	for _, k := range []string{"PATH", "HOME", "USER", "SIGNET_CONFIG", "NATS_URL", "SIGNET_KEY", "SIGNET_NATS_URL", "SSH_AUTH_SOCK", "WORK"} {
		env = append(env, k+"="+ts.Getenv(k))
	}
	cmd.Env = env
	out, _ := cmd.CombinedOutput()
	ts.Logf("%s", out)
	got := cmd.ProcessState.ExitCode()
	if got != want {
		ts.Fatalf("%s exited %d, want %d", args[1], got, want)
	}
}

// freeport NAME sets $NAME to a TCP port free on 127.0.0.1, for a
// process the script starts itself (signet broker).
func cmdFreePort(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: freeport NAME")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	ts.Check(err)
	port := l.Addr().(*net.TCPAddr).Port
	ts.Check(l.Close())
	ts.Setenv(args[0], strconv.Itoa(port))
}

// stage APP VERSIONS HOSTCONFIG... APPFILE brings up, for the hosts of the
// given signetd.yaml files (web1, web2... in order), the real backends that
// `signet demo` uses (internal/stage): a dpkg repository offering APP at
// VERSIONS (comma-separated; the first is installed), an isolated apt root
// and a runit per host running the app, one HAProxy over the apps and an
// Alertmanager. It replaces the plugins section of each HOSTCONFIG with the
// plugin sections for these backends, and the health url of APPFILE with
// the stage's (http://127.0.0.1:PORT/{{identity}}/version). They are
// stopped when the script ends.
func cmdStage(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 4 {
		ts.Fatalf("usage: stage APP VERSIONS HOSTCONFIG... APPFILE")
	}
	app, versions, hostFiles, appFile := args[0], strings.Split(args[1], ","), args[2:len(args)-1], args[len(args)-1]
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := stage.StartBackends(ctx, stage.Options{Dir: ts.MkAbs("stage"), Hosts: len(hostFiles), App: app,
		Versions: versions, AppCommand: stagetest.AppCommand()})
	ts.Check(err)
	ts.Defer(func() {
		if err := st.Stop(); err != nil {
			ts.Logf("stage stop: %v", err)
		}
	})
	for i, f := range hostFiles {
		id := fmt.Sprintf("web%d", i+1)
		b, err := os.ReadFile(ts.MkAbs(f))
		ts.Check(err)
		if !strings.Contains(string(b), "\nidentity: "+id+"\n") && !strings.HasPrefix(string(b), "identity: "+id+"\n") {
			ts.Fatalf("stage: %s: want identity %s (the stage names its hosts web1, web2... in order)", f, id)
		}
		cfgs, err := st.PluginConfigs(id)
		ts.Check(err)
		var out []string
		skip := false
		for _, line := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
			if line == "plugins:" {
				skip = true
				continue
			}
			if skip && (strings.HasPrefix(line, " ") || line == "") {
				continue
			}
			skip = false
			out = append(out, line)
		}
		out = append(out, "# plugins: the e2e suite's isolated backends (test/e2e stage)", "plugins:")
		for _, name := range []string{stage.BackendPackage, stage.BackendService, stage.BackendHAProxy, stage.BackendMaintenance, stage.BackendHealth} {
			out = append(out, fmt.Sprintf("  %s: %s", name, cfgs[name]))
		}
		ts.Check(os.WriteFile(ts.MkAbs(f), []byte(strings.Join(out, "\n")+"\n"), 0o600))
	}
	b, err := os.ReadFile(ts.MkAbs(appFile))
	ts.Check(err)
	lines := strings.Split(string(b), "\n")
	found := false
	for i, line := range lines {
		if strings.HasPrefix(line, "  url: ") {
			lines[i], found = fmt.Sprintf("  url: %q", st.HealthURL), true
		}
	}
	if !found {
		ts.Fatalf("stage: %s: no health url line (\"  url: ...\") to replace", appFile)
	}
	ts.Check(os.WriteFile(ts.MkAbs(appFile), []byte(strings.Join(lines, "\n")), 0o644))
}

// httpget URL fetches URL and writes the body to stdout; a status other
// than 200 fails.
func cmdHTTPGet(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: httpget URL")
	}
	resp, err := http.Get(args[0])
	ts.Check(err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	ts.Check(err)
	if resp.StatusCode != http.StatusOK {
		ts.Fatalf("GET %s: %s\n%s", args[0], resp.Status, b)
	}
	ts.Stdout().Write(b)
}
