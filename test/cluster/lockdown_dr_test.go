package cluster

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/signetbus/signet/agents"
	"github.com/signetbus/signet/internal/broker"
	"github.com/signetbus/signet/internal/broker/brokertest"
	"github.com/signetbus/signet/internal/cli"
	"github.com/signetbus/signet/internal/config"
	"github.com/signetbus/signet/internal/keys"
)

// TestLockedDownDRThroughHub runs the DR site of docs/operations.md ("A
// locked-down cluster", its DR part) with both brokers locked down, each
// started by the real CLI: the hub's `signet broker init` names the DR
// collective and its JetStream domain (--collective dr --jetstream-domain
// dr=dr), so its operator users may reach DR's request subjects and DR's
// JetStream API in domain dr ($JS.dr.API.…), which the hub forwards over
// the leafnode; the DR broker's own init makes its hosts' users. One
// operator user of the hub then pings, plans a deploy and lists approvals
// with --env dr, an admin of the hub locks and unlocks DR, and the hub
// refuses what the operator's role does not allow, DR subjects included.
func TestLockedDownDRThroughHub(t *testing.T) {
	dir := t.TempDir()
	run := func(ctx context.Context, out *syncBuf, env map[string]string, args ...string) int {
		return cli.Main(ctx, args, cli.IO{In: strings.NewReader(""), Out: out, Err: out,
			Getenv: func(k string) string { return env[k] }})
	}
	home := map[string]string{"HOME": dir, "USER": "operator"}
	var signetRefused func(t *testing.T, cfg string, refusal bool, args ...string) (int, string)
	hubAuth, drAuth := filepath.Join(dir, "hub"), filepath.Join(dir, "drauth")
	drIDs := hostIDs("dr", 3)
	for _, args := range [][]string{
		{"broker", "init", hubAuth, "--collective", "prod", "--collective", "dr", "--jetstream-domain", "dr=dr",
			"--admin", "root", "--client", "alice", "--host", "web1"},
		{"broker", "init", drAuth, "--collective", "dr", "--admin", "drroot",
			"--host", drIDs[0], "--host", drIDs[1], "--host", drIDs[2]},
	} {
		out := &syncBuf{}
		if code := run(context.Background(), out, home, args...); code != 0 {
			t.Fatalf("signet %s: exit %d\n%s", strings.Join(args, " "), code, out)
		}
	}
	// The DR broker presents the hub's cluster credentials on its leafnode.
	if err := os.RemoveAll(filepath.Join(drAuth, "cluster")); err != nil {
		t.Fatal(err)
	}
	if err := os.CopyFS(filepath.Join(drAuth, "cluster"), os.DirFS(filepath.Join(hubAuth, "cluster"))); err != nil {
		t.Fatal(err)
	}
	hubPort, leafPort, drPort := brokertest.FreePort(t), brokertest.FreePort(t), brokertest.FreePort(t)
	startBroker := func(name string, args ...string) {
		t.Helper()
		log := &syncBuf{}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); run(ctx, log, home, args...) }()
		t.Cleanup(func() { cancel(); <-done })
		for end := time.Now().Add(30 * time.Second); !strings.Contains(log.String(), "broker listening"); time.Sleep(50 * time.Millisecond) {
			if time.Now().After(end) {
				t.Fatalf("%s did not start:\n%s", name, log)
			}
		}
	}
	startBroker("the hub", "broker", "--auth", hubAuth, "--collective", "prod", "--name", "hub1", "--port", fmt.Sprint(hubPort),
		"--store", filepath.Join(dir, "hub1"), "--leafnode-listen", fmt.Sprintf("127.0.0.1:%d", leafPort))
	startBroker("the DR broker", "broker", "--auth", drAuth, "--collective", "dr", "--name", "dr1", "--port", fmt.Sprint(drPort),
		"--store", filepath.Join(dir, "dr1"), "--registry-ttl", "1m", "--domain", "dr", "--leafnode-remote", fmt.Sprintf("nats-leaf://127.0.0.1:%d", leafPort))
	hubURL, drURL := fmt.Sprintf("tls://127.0.0.1:%d", hubPort), fmt.Sprintf("tls://127.0.0.1:%d", drPort)

	// DR hosts connect to the DR broker as their own users.
	opKey := filepath.Join(dir, "operator_key")
	if _, err := keys.Generate(opKey, "operator@bastion", nil); err != nil {
		t.Fatal(err)
	}
	op, err := keys.LoadSigner(opKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	drf := newFleet(t, "dr", drIDs, op)
	delete(drf.sim.Nodes, "lb1")
	drf.auth = func(id string, c *agents.NATSConfig) {
		c.NKeyFile, c.CAFile = broker.SeedPath(drAuth, id), broker.LabTLS(drAuth).CA
	}
	drf.start(drURL, map[string]string{"env": "dr"})

	write(t, filepath.Join(dir, "known_hosts"), drf.knownHosts())
	write(t, filepath.Join(dir, "app.yaml"), app)
	clientConfig := func(user string) string {
		p := filepath.Join(dir, user+".yaml")
		nats := fmt.Sprintf("urls: [%s], nkey_file: %s, ca_file: %s", hubURL, broker.SeedPath(hubAuth, user), broker.LabTLS(hubAuth).CA)
		write(t, p, `user: operator
key: operator_key
known_hosts: known_hosts
nats: {`+nats+`}
timeout: 5s
discovery_timeout: 1s
environments:
  prod: {collective: prod}
  dr:
    collective: dr
    nats: {`+nats+`, jetstream_domain: dr}
`)
		return p
	}
	alice, root := clientConfig("alice"), clientConfig("root")
	// signet runs the CLI as user cfg. nats.go prints the broker's
	// asynchronous errors (a permissions violation) on the process's
	// stderr: they are collected, and any is an error unless refusal.
	signet := func(cfg string, args ...string) (int, string) {
		t.Helper()
		return signetRefused(t, cfg, false, args...)
	}
	signetRefused = func(t *testing.T, cfg string, refusal bool, args ...string) (int, string) {
		t.Helper()
		out := &syncBuf{}
		env := map[string]string{"SIGNET_CONFIG": cfg, "USER": "operator", "HOME": dir}
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		stderr := os.Stderr
		os.Stderr = w
		read := make(chan string)
		go func() { b, _ := io.ReadAll(r); read <- string(b) }()
		code := run(context.Background(), out, env, args...)
		os.Stderr = stderr
		w.Close()
		async := <-read
		r.Close()
		if strings.Contains(async, "Permissions Violation") != refusal {
			t.Errorf("signet %s: the broker's permission violations (want any: %v):\n%s", strings.Join(args, " "), refusal, async)
		}
		return code, out.String() + async
	}
	named := []string{"-I", drIDs[0], "-I", drIDs[1], "-I", drIDs[2]}
	untilAll := func(want string) {
		t.Helper()
		var out string
		for end := time.Now().Add(30 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
			_, out = signet(alice, append([]string{"ping", "--env", "dr"}, named...)...)
			all := true
			for _, id := range drIDs {
				all = all && strings.Contains(lineOf(out, id), want)
			}
			if all {
				return
			}
		}
		t.Fatalf("signet ping --env dr as alice: not every DR host says %q within 30s:\n%s", want, out)
	}
	// The operator's user of the hub reaches the DR hosts through the
	// leafnode (the registry in domain dr finds them).
	untilAll("\tok\t")
	code, out := signet(alice, "ping", "--env", "dr")
	for end := time.Now().Add(20 * time.Second); (code != 0 || lineOf(out, drIDs[2]) == "") && time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		code, out = signet(alice, "ping", "--env", "dr")
	}
	if code != 0 || lineOf(out, drIDs[2]) == "" {
		t.Fatalf("signet ping --env dr (the DR registry) as alice: exit %d\n%s", code, out)
	}
	// A deploy plan reads the DR registry through the leafnode.
	code, out = signet(alice, "deploy", filepath.Join(dir, "app.yaml"), "1.4.2", "--env", "dr", "--plan")
	for end := time.Now().Add(30 * time.Second); code != 0 && strings.Contains(out, "created again") && time.Now().Before(end); {
		time.Sleep(time.Second)
		code, out = signet(alice, "deploy", filepath.Join(dir, "app.yaml"), "1.4.2", "--env", "dr", "--plan")
	}
	if code != 0 || lineOf(out, drIDs[0]) == "" {
		t.Fatalf("signet deploy --env dr --plan as alice: exit %d\n%s", code, out)
	}
	// A request waiting for approval is written in DR's approvals bucket
	// and listed from it, through the hub, by message gets only.
	waitCtx, stopWait := context.WithCancel(context.Background())
	waitDone := make(chan struct{})
	waitOut := &syncBuf{}
	go func() {
		defer close(waitDone)
		run(waitCtx, waitOut, map[string]string{"SIGNET_CONFIG": alice, "USER": "operator", "HOME": dir},
			"rpc", "health", "http", "url=http://127.0.0.1:8080/version", "-I", drIDs[0], "--env", "dr", "--wait-approval", "--reason", "CHG-9 dr check")
	}()
	for end := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		code, out := signet(alice, "approvals", "--env", "dr")
		if code == 0 && strings.Contains(out, "CHG-9 dr check") && strings.Contains(out, "health.http") {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("signet approvals --env dr as alice: exit %d, no pending request\n%s\nrequester:\n%s", code, out, waitOut)
		}
	}
	stopWait()
	<-waitDone
	// Only an admin writes DR's locks: the hub refuses alice's write in
	// domain dr, and takes root's.
	if code, out := signetRefused(t, alice, true, "lock", "--all", "--reason", "not mine", "--env", "dr"); code == 0 || !strings.Contains(out, "may not write the control bucket") {
		t.Fatalf("signet lock --env dr as alice: exit %d, want a refusal by the broker\n%s", code, out)
	}
	if code, out := signet(root, "lock", "--all", "--reason", "dr drill", "--env", "dr"); code != 0 {
		t.Fatalf("signet lock --env dr as root: exit %d\n%s", code, out)
	}
	untilAll("refused")
	if code, out := signet(root, "unlock", "L1", "--env", "dr"); code != 0 {
		t.Fatalf("signet unlock --env dr as root: exit %d\n%s", code, out)
	}
	untilAll("\tok\t")

	// What alice's role does not allow, the hub refuses, DR subjects
	// included: another collective's requests, reading DR's requests,
	// a consumer on a DR bucket she writes, DR's control bucket.
	cfg := config.NATS{NKeyFile: broker.SeedPath(hubAuth, "alice"), CAFile: broker.LabTLS(hubAuth).CA}
	opts, err := cfg.AuthOptions()
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 16)
	opts = append(opts, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errs <- err }))
	nc, err := nats.Connect(hubURL, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	refused := func(what string) {
		t.Helper()
		timeout := time.After(5 * time.Second)
		for {
			select {
			case err := <-errs:
				if strings.Contains(err.Error(), "Permissions Violation for "+what) {
					return
				}
			case <-timeout:
				t.Fatalf("the hub did not refuse alice's %s", what)
			}
		}
	}
	for _, subj := range []string{"stage.agent.health", "$JS.dr.API.CONSUMER.CREATE.KV_signet_locks",
		"$JS.dr.API.$KV.signet_control_dr.locks", "$JS.dr.API.STREAM.DELETE.KV_signet_registry_dr", "$JS.stage.API.STREAM.INFO.KV_signet_locks"} {
		nc.Publish(subj, []byte("{}"))
		nc.Flush()
		refused(fmt.Sprintf("Publish to %q", subj))
	}
	for _, subj := range []string{"dr.agent.>", "_INBOX.>"} {
		if _, err := nc.SubscribeSync(subj); err != nil {
			t.Fatal(err)
		}
		nc.Flush()
		refused(fmt.Sprintf("Subscription to %q", subj))
	}
	// The DR broker's own users are what its hosts are: a DR host's user
	// may not send requests to the other DR hosts.
	hcfg := config.NATS{NKeyFile: broker.SeedPath(drAuth, drIDs[0]), CAFile: broker.LabTLS(drAuth).CA}
	hopts, err := hcfg.AuthOptions()
	if err != nil {
		t.Fatal(err)
	}
	herrs := make(chan error, 4)
	hopts = append(hopts, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { herrs <- err }))
	hc, err := nats.Connect(drURL, hopts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hc.Close)
	hc.Publish("dr.node."+drIDs[1], []byte("{}"))
	hc.Flush()
	select {
	case err := <-herrs:
		if !strings.Contains(err.Error(), "Permissions Violation") {
			t.Fatalf("DR host user: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the DR broker did not refuse a DR host's request to another host")
	}

	// The leafnode itself carries only DR's traffic: the DR broker (here
	// its admin, who may do anything on it) sends nothing into the hub
	// but replies, and the hub sends it only DR's subjects and domain.
	rootOpts, err := (&config.NATS{NKeyFile: broker.SeedPath(hubAuth, "root"), CAFile: broker.LabTLS(hubAuth).CA}).AuthOptions()
	if err != nil {
		t.Fatal(err)
	}
	hubRoot, err := nats.Connect(hubURL, rootOpts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hubRoot.Close)
	drOpts, err := (&config.NATS{NKeyFile: broker.SeedPath(drAuth, "drroot"), CAFile: broker.LabTLS(drAuth).CA}).AuthOptions()
	if err != nil {
		t.Fatal(err)
	}
	drRoot, err := nats.Connect(drURL, drOpts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(drRoot.Close)
	crosses := func(from, to *nats.Conn, subject string) bool {
		t.Helper()
		sub, err := to.SubscribeSync(subject)
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Unsubscribe()
		to.Flush()
		// Interest crosses the leafnode asynchronously: try for a while.
		for end := time.Now().Add(time.Second); time.Now().Before(end); {
			from.Publish(subject, []byte("probe"))
			from.Flush()
			if _, err := sub.NextMsg(100 * time.Millisecond); err == nil {
				return true
			}
		}
		return false
	}
	for _, c := range []struct {
		name     string
		from, to *nats.Conn
		subject  string
		want     bool
	}{
		{"a reply from DR to a hub inbox", drRoot, hubRoot, "_INBOX.probe.1", true},
		{"a DR request from the hub", hubRoot, drRoot, "dr.agent.probe", true},
		{"a request from DR to production hosts", drRoot, hubRoot, "prod.agent.health", false},
		{"a lock written from DR into the hub's control bucket", drRoot, hubRoot, "$KV.signet_control_prod.locks", false},
		{"the hub's JetStream API from DR", drRoot, hubRoot, "$JS.API.STREAM.DELETE.KV_signet_registry_prod", false},
		{"production requests read from DR", hubRoot, drRoot, "prod.agent.health", false},
		{"operators' replies read from DR", hubRoot, drRoot, "_INBOX.alice.1", false},
	} {
		if got := crosses(c.from, c.to, c.subject); got != c.want {
			t.Errorf("%s (%s) crosses the leafnode: %v, want %v", c.name, c.subject, got, c.want)
		}
	}
}
