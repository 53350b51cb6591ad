package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/signetbus/signet/bus"
	"github.com/signetbus/signet/internal/keys/keytest"
	"github.com/signetbus/signet/internal/lab"
	"github.com/signetbus/signet/internal/testio"
)

// statusLab is a lab of three real responders (signetd 1.2.3, facts env=lab,
// role=web) on a real embedded broker.
func statusLab(t *testing.T) *lab.Lab {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := lab.Start(ctx, lab.Options{Dir: t.TempDir(), Hosts: 3, Version: "1.2.3"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Stop() })
	return l
}

// register writes a registry entry as a signetd would, in its JSON form
// (raw, so that an entry of an older signetd, without "protocol", is
// exactly what that signetd wrote).
func register(t *testing.T, l *lab.Lab, entry map[string]any) {
	t.Helper()
	nc, err := nats.Connect(l.Broker.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	b, err := json.Marshal(entry)
	if err != nil {
		t.Fatal(err)
	}
	var r bus.Registration
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	reg, err := bus.OpenRegistry(ctx, nc, l.Collective)
	if err != nil {
		t.Fatal(err)
	}
	// Signed with a key of its own: these hosts are not in known_hosts,
	// so the client lists their entries as unknown hosts' entries.
	if err := reg.Put(ctx, keytest.Signer(t), &r); err != nil {
		t.Fatal(err)
	}
}

func entry(id, version string, updated time.Time, facts map[string]string) map[string]any {
	return map[string]any{"identity": id, "collective": "lab", "facts": facts, "agents": []string{"rpcutil"},
		"host_key": "", "version": version, "started": time.Now(), "updated": updated}
}

// runStatus runs `signet status ARGS` and returns its exit code and
// stdout; stdout must be exactly one Nagios line.
func runStatus(t *testing.T, config string, args ...string) (int, string) {
	t.Helper()
	var out, errb testio.Buffer
	code := Main(context.Background(), append([]string{"status", "--config", config}, args...),
		IO{In: strings.NewReader(""), Out: &out, Err: &errb, Getenv: func(string) string { return "" }})
	if strings.Count(out.String(), "\n") != 1 && !strings.Contains(strings.Join(args, " "), "--json") {
		t.Errorf("status %v printed %q, want one line (stderr %q)", args, out.String(), errb.String())
	}
	return code, out.String()
}

var nagiosLine = regexp.MustCompile(`^SIGNET STATUS (OK|WARNING|CRITICAL|UNKNOWN) - [^|\n]+( \| ([a-z_]+=\d+;\d*;\d*;\d*(;\d+)? ?)+)?\n$`)

func TestStatusExitCodes(t *testing.T) {
	l := statusLab(t)
	dir := t.TempDir()
	inv := filepath.Join(dir, "inventory")
	os.WriteFile(inv, []byte("# the web tier\nweb1\nweb2\nweb3\n"), 0o600)
	invMore := filepath.Join(dir, "inventory-more")
	os.WriteFile(invMore, []byte("web1\nweb2\nweb3\nweb4\n"), 0o600)

	check := func(name string, wantCode int, want []string, args ...string) {
		t.Helper()
		code, out := runStatus(t, l.ClientConfig, args...)
		if code != wantCode {
			t.Errorf("%s: exit %d, want %d: %s", name, code, wantCode, out)
		}
		if !nagiosLine.MatchString(out) {
			t.Errorf("%s: not a Nagios plugin line: %q", name, out)
		}
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Errorf("%s: %q lacks %q", name, out, w)
			}
		}
	}
	check("all there", StatusOK, []string{"SIGNET STATUS OK - 3 of 3 expected hosts registered, none stale, version 1.2.3 | ",
		"registered=3;;;0", "missing=0;0;0;0;3", "stale=0;0;0;0", "versions=1;;;0"}, "--expect", "3")
	check("inventory", StatusOK, []string{"SIGNET STATUS OK"}, "--inventory", inv)
	check("one of four missing, warning only", StatusWarning,
		[]string{"SIGNET STATUS WARNING - 1 of 4 expected hosts not registered: web4", "missing=1;0;2;0;4"},
		"--inventory", invMore, "--critical-missing", "50%")
	check("one of four missing", StatusCritical, []string{"SIGNET STATUS CRITICAL - 1 of 4 expected hosts not registered: web4"}, "--inventory", invMore)
	check("seven of ten missing", StatusCritical, []string{"7 of 10 expected hosts not registered", "missing=7;0;1;0;10"}, "--expect", "10")
	check("bad threshold", StatusUnknown, []string{"SIGNET STATUS UNKNOWN - --warning-missing \"x\""}, "-w", "x")
	check("bad flag", StatusUnknown, []string{"SIGNET STATUS UNKNOWN - unknown flag: --nosuch"}, "--nosuch")
	check("argument", StatusUnknown, []string{"SIGNET STATUS UNKNOWN - unexpected argument"}, "web1")

	// A host of an older release joins: version skew.
	register(t, l, entry("web4", "1.2.2", time.Now(), map[string]string{"env": "lab", "role": "web"}))
	check("version skew", StatusWarning, []string{"SIGNET STATUS WARNING - version skew: 1.2.2 on 1, 1.2.3 on 3", "versions=2;;;0"}, "--inventory", invMore)
	check("wanted version", StatusWarning, []string{"1 hosts not at version 1.2.3: web4"}, "--inventory", invMore, "--version", "1.2.3")

	// A host that stopped refreshing its entry ten minutes ago.
	register(t, l, entry("web5", "1.2.3", time.Now().Add(-10*time.Minute), map[string]string{"env": "prod", "role": "web"}))
	check("stale", StatusCritical, []string{"1 stale registrations (not refreshed for over 1m15s): web5 (10m0s)", "1 registered hosts not in the inventory: web5", "stale=1;0;0;0"},
		"--inventory", invMore)
	check("stale, tolerated", StatusWarning, []string{"SIGNET STATUS WARNING"}, "--expect", "5", "--critical-stale", "1", "--version", "1.2.3")
	// The app selector: web5 is in env prod, not in the app's hosts for lab.
	app := filepath.Join(dir, "web.yaml")
	os.WriteFile(app, []byte(`version: 1
name: web
package: web
service: web
hosts: [role=web]
haproxy: {backend: web, lb_filter: [role=lb]}
health: {url: "http://127.0.0.1:1/"}
`), 0o600)
	check("app selector", StatusWarning, []string{"SIGNET STATUS WARNING - version skew", "registered=4;;;0"}, "--app", app, "--env", "lab", "--expect", "4")

	// A host speaking a protocol this client cannot use.
	future := entry("web6", "9.0.0", time.Now(), map[string]string{"env": "lab", "role": "web"})
	future["protocol"] = bus.ProtocolVersion + 2
	register(t, l, future)
	check("protocol", StatusCritical, []string{fmt.Sprintf("web6 (protocol %d)", bus.ProtocolVersion+2)}, "--app", app, "--env", "lab")

	// JSON for other tools, with the same exit code.
	code, out := runStatus(t, l.ClientConfig, "--app", app, "--env", "lab", "--json")
	var st fleetStatus
	if err := json.Unmarshal([]byte(out), &st); err != nil || code != StatusCritical || st.Status != "CRITICAL" || st.Registered != 5 {
		t.Errorf("--json: exit %d, %v: %s", code, err, out)
	}

	// A host that was running an hour before this registry existed: the
	// broker lost its state and the fleet is registering again.
	old := entry("web7", "1.2.3", time.Now(), map[string]string{"env": "lab", "role": "web"})
	old["started"] = time.Now().Add(-time.Hour)
	register(t, l, old)
	check("registry lost", StatusCritical, []string{"SIGNET STATUS CRITICAL - the fleet registry was created again", "web6 (protocol 4)"}, "--expect", "7")
}

// TestStatusUnknownWithoutBroker: a check that cannot read the registry is
// UNKNOWN, at once, not a wait for the broker to come back.
func TestStatusUnknownWithoutBroker(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "client.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("collective: lab\nnats: {urls: [\"nats://127.0.0.1:%d\"]}\n", freeTCPPort(t))), 0o600)
	code, out := runStatus(t, cfg, "--expect", "3", "--timeout", "2s")
	if code != StatusUnknown || !strings.HasPrefix(out, "SIGNET STATUS UNKNOWN - connect to broker nats://127.0.0.1:") {
		t.Fatalf("exit %d: %q", code, out)
	}
}

// TestStatusStaleRealEntries: the real responders' own entries turn stale
// when they are not refreshed (a clock two minutes ahead stands in for two
// minutes of silence).
func TestStatusStaleRealEntries(t *testing.T) {
	l := statusLab(t)
	var out testio.Buffer
	g := &globalOptions{io: &IO{Out: &out, Err: &out, Getenv: func(string) string { return "" }}, config: l.ClientConfig}
	o := &statusOptions{expect: 3, stale: 75 * time.Second, warnMissing: "0", critMissing: "0", warnStale: "0", critStale: "1",
		timeout: 10 * time.Second, now: func() time.Time { return time.Now().Add(2 * time.Minute) }}
	err := statusRun(context.Background(), g, o)
	if code := exitCode(err, &out, "signet"); code != StatusCritical || !strings.Contains(out.String(), "3 stale registrations") {
		t.Fatalf("exit %d: %s", code, out.String())
	}
}
