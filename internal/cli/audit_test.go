package cli

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/crypto/ssh"

	"github.com/signetbus/signet/bus"
	"github.com/signetbus/signet/internal/audit"
	"github.com/signetbus/signet/internal/audit/audittest"
	"github.com/signetbus/signet/internal/audit/ship"
	"github.com/signetbus/signet/internal/broker/brokertest"
	"github.com/signetbus/signet/internal/keys/keytest"
)

// auditFleet ships two hosts' audit logs to a real broker and writes a
// client config whose known_hosts holds their keys.
func auditFleet(t *testing.T) (cfgPath string, logs map[string]string, nc *nats.Conn) {
	t.Helper()
	s := brokertest.Start(t)
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	dir := t.TempDir()
	var known bytes.Buffer
	logs = map[string]string{}
	alice, mallory := keytest.Signer(t), keytest.Signer(t)
	for i, id := range []string{"web1", "db1"} {
		_, priv, _ := ed25519.GenerateKey(rand.Reader)
		key, _ := ssh.NewSignerFromKey(priv)
		fmt.Fprintf(&known, "%s %s", id, ssh.MarshalAuthorizedKey(key.PublicKey()))
		path := filepath.Join(dir, id, "audit.jsonl")
		l, err := audit.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		l.Identity, l.Signer, l.CheckpointEvery = id, key, 3
		for n := range 4 {
			rec := audittest.Record(t, alice, "alice", id, fmt.Sprintf("%s-r%d", id, n), "package", "update", map[string]any{"package": "nginx"})
			if i == 1 && n == 2 {
				rec = audittest.Record(t, mallory, "mallory", id, fmt.Sprintf("%s-r%d", id, n), "package", "update", map[string]any{"package": "nginx"})
				rec.Decision, rec.Status, rec.Code, rec.Reason = bus.DecisionRefused, bus.StatusRefused, "forbidden", "role web may not run package.update"
			}
			if err := l.Audit(rec); err != nil {
				t.Fatal(err)
			}
		}
		l.Close()
		sh, err := ship.New(ship.Config{Conn: nc, Collective: "signet", Identity: id, Path: path, Poll: 10 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- sh.Run(ctx) }()
		for sh.Acked() < 5 {
			time.Sleep(10 * time.Millisecond)
		}
		cancel()
		<-done
		logs[id] = path
	}
	os.WriteFile(filepath.Join(dir, "known_hosts"), known.Bytes(), 0o600)
	cfgPath = filepath.Join(dir, "client.yaml")
	os.WriteFile(cfgPath, fmt.Appendf(nil, "known_hosts: known_hosts\nnats: {urls: [%q]}\n", s.ClientURL()), 0o600)
	return cfgPath, logs, nc
}

func runSignet(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = Main(context.Background(), args, IO{Out: &out, Err: &errb, Getenv: func(string) string { return "" }})
	return code, out.String(), errb.String()
}

func TestAuditQueryAndVerify(t *testing.T) {
	cfg, logs, nc := auditFleet(t)

	code, out, errs := runSignet(t, "--config", cfg, "audit", "--decision", "refused")
	if code != 0 || strings.Count(out, "\n") != 1 || !strings.Contains(out, "db1\t3\tmallory\tpackage\tupdate\trefused") {
		t.Fatalf("audit --decision refused: exit %d\n%s%s", code, out, errs)
	}
	code, out, _ = runSignet(t, "--config", cfg, "audit", "--host", "web1", "--operator", "alice", "--action", "update")
	if code != 0 || strings.Count(out, "\n") != 4 || strings.Contains(out, "db1") {
		t.Fatalf("audit --host web1: exit %d\n%s", code, out)
	}
	code, out, _ = runSignet(t, "--config", cfg, "--json", "audit", "--request", "web1-r2")
	if code != 0 || !strings.Contains(out, `"request_id": "web1-r2"`) || !strings.Contains(out, `"seq": 3`) {
		t.Fatalf("audit --request: exit %d\n%s", code, out)
	}

	code, out, errs = runSignet(t, "--config", cfg, "audit", "verify")
	if code != 0 || out != "" || !strings.Contains(errs, "web1: seq 1 to 5, 5 lines, 1 checkpoints verified") {
		t.Fatalf("verify on an untouched stream: exit %d\n%s%s", code, out, errs)
	}
	code, _, errs = runSignet(t, "--config", cfg, "audit", "verify", "--file", logs["db1"], "--from-start")
	if code != 0 {
		t.Fatalf("verify --file on an untouched log: exit %d\n%s", code, errs)
	}

	// A broker user deletes db1's seq 2 from the stream.
	js, _ := jetstream.New(nc)
	st, _ := js.Stream(context.Background(), ship.Stream("signet"))
	lines, _ := ship.Read(context.Background(), js, "signet", ship.Query{Hosts: []string{"db1"}})
	var streamSeq uint64
	fmt.Sscanf(lines[1].Where, "stream message %d", &streamSeq)
	if err := st.DeleteMsg(context.Background(), streamSeq); err != nil {
		t.Fatal(err)
	}
	code, out, errs = runSignet(t, "--config", cfg, "audit", "verify")
	if code != ExitFailed || !strings.Contains(out, "db1\t2\tdeleted\tseqs 2 to 2 are missing") || !strings.Contains(errs, "2 findings") ||
		!strings.Contains(out, "(stream signet_audit_signet)\t0\tdeleted\tthe broker removed messages: 1 deleted") {
		t.Fatalf("verify after a deletion: exit %d\n%s%s", code, out, errs)
	}
	code, out, errs = runSignet(t, "--config", cfg, "audit", "verify", "--host", "web1")
	if code != 0 {
		t.Fatalf("verify --host web1 (untouched): exit %d\n%s%s", code, out, errs)
	}

	// A cut tail that no later line reveals yet: the stream's own state
	// still shows it.
	info, _ := st.Info(context.Background())
	if err := st.DeleteMsg(context.Background(), info.State.LastSeq); err != nil {
		t.Fatal(err)
	}
	code, out, _ = runSignet(t, "--config", cfg, "audit", "verify")
	if code != ExitFailed || !strings.Contains(out, "the broker removed messages: 2 deleted") {
		t.Fatalf("verify after the tail was cut: exit %d\n%s", code, out)
	}

	// Someone with root on web1 edits its log file.
	b, _ := os.ReadFile(logs["web1"])
	os.WriteFile(logs["web1"], bytes.Replace(b, []byte(`"web1-r1"`), []byte(`"web1-rX"`), 1), 0o600)
	code, out, _ = runSignet(t, "--config", cfg, "audit", "verify", "--file", logs["web1"])
	if code != ExitFailed || !strings.Contains(out, "web1\t2\tedited\t") {
		t.Fatalf("verify --file after an edit: exit %d\n%s", code, out)
	}
}
