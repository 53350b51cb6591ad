package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"golang.org/x/crypto/ssh"

	"github.com/signetbus/signet/bus"
	"github.com/signetbus/signet/internal/broker"
	"github.com/signetbus/signet/internal/keys"
)

type knownKeys map[string]ssh.PublicKey

func (k knownKeys) Lookup(id string) (ssh.PublicKey, bool) { p, ok := k[id]; return p, ok }

// TestKilledMidActionLeavesStartedRecord runs the real signetd binary with
// an external plugin whose action takes seconds, kills signetd with
// SIGKILL while the action runs, and requires the audit log to say the
// signed action started: request id, sender, agent and action.
func TestKilledMidActionLeavesStartedRecord(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipped: external plugins must be owned by root, so this test needs root (CI runs as root)")
	}
	signetd, err := exec.LookPath("signetd")
	if err != nil {
		t.Fatalf("the signetd command set up by testscript.Main: %v", err)
	}
	work := t.TempDir()
	p := func(s string) string { return filepath.Join(work, s) }
	s, err := broker.Start(broker.Config{Port: -1, StoreDir: p("broker")})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { s.Shutdown(); s.WaitForShutdown() }()

	if _, err := keys.Generate(p("op_key"), "alice@bastion", nil); err != nil {
		t.Fatal(err)
	}
	op, err := keys.LoadSigner(p("op_key"), nil)
	if err != nil {
		t.Fatal(err)
	}
	pub := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(op.PublicKey())))
	write := func(path, content string, mode os.FileMode) {
		t.Helper()
		if err := os.WriteFile(path, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
	}
	write(p("authorized_keys"), fmt.Sprintf("roles=\"admin\",name=\"alice\" %s\n", pub), 0o600)
	write(p("policy.yaml"), "rules:\n  - name: admin-all\n    roles: [admin]\n    allow: [\"*\"]\n", 0o600)
	if err := os.Mkdir(p("plugins.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	write(p("plugins.d/slowjob.json"), `{"name": "slowjob", "description": "takes its time",
  "actions": [{"name": "run", "description": "sleeps a few seconds", "timeout": "1m"}]}`, 0o644)
	write(p("plugins.d/slowjob"), "#!/bin/sh\ncat >/dev/null\nexec sleep 8\n", 0o755)
	hk, err := keys.LoadHostKey(p("web1.key"))
	if err != nil {
		t.Fatal(err)
	}
	write(p("web1.yaml"), fmt.Sprintf(`identity: web1
collective: e2e
nats:
  urls: [%q]
host_key: %s
authorized_keys: %s
policy: %s
audit_log: %s
external_dir: %s
registry_ttl: 30s
`, s.ClientURL(), p("web1.key"), p("authorized_keys"), p("policy.yaml"), p("audit/web1.jsonl"), p("plugins.d")), 0o600)

	var stderr bytes.Buffer
	cmd := exec.Command(signetd, "-c", p("web1.yaml"))
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	defer func() {
		if !killed {
			cmd.Process.Kill()
			cmd.Wait()
		}
	}()

	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	c, err := bus.NewClient(bus.ClientConfig{Conn: nc, Collective: "e2e", Signer: op, User: "alice", HostKeys: knownKeys{"web1": hk.PublicKey()}})
	if err != nil {
		t.Fatal(err)
	}
	up := false
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline) && !up; {
		out, err := c.Do(context.Background(), bus.Query{Agent: "rpcutil", Action: "ping", Targets: []string{"web1"}, Timeout: 500 * time.Millisecond})
		up = err == nil && out.Results[0].Status == bus.ResultOK
	}
	if !up {
		t.Fatalf("signetd did not answer a ping within 30s; its stderr:\n%s", stderr.String())
	}

	go c.Do(context.Background(), bus.Query{Agent: "slowjob", Action: "run", Targets: []string{"web1"}, Timeout: 20 * time.Second})
	var started map[string]any
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline) && started == nil; time.Sleep(20 * time.Millisecond) {
		for _, r := range readRecords(t, p("audit/web1.jsonl")) {
			if r["decision"] == "started" && r["agent"] == "slowjob" {
				started = r
			}
		}
	}
	if started == nil {
		t.Fatalf("no started record while the action runs; signetd's stderr:\n%s", stderr.String())
	}
	if err := cmd.Process.Signal(os.Kill); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	killed = true

	recs := readRecords(t, p("audit/web1.jsonl"))
	var found map[string]any
	for _, r := range recs {
		if r["request_id"] == started["request_id"] {
			if r["decision"] != "started" {
				t.Fatalf("the killed action has a %v record: %v", r["decision"], r)
			}
			found = r
		}
	}
	if found == nil || len(fmt.Sprint(found["request_id"])) != 32 || found["principal"] != "alice" || found["user"] != "alice" ||
		found["action"] != "run" || found["agent"] != "slowjob" || !strings.HasPrefix(fmt.Sprint(found["key"]), "SHA256:") {
		t.Fatalf("after SIGKILL the audit log lacks a complete started record: %v", found)
	}
}

func readRecords(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil {
			out = append(out, m)
		}
	}
	return out
}
