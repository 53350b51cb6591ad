package signetd

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/signetbus/signet/internal/keys"
)

// daemonFiles are a host's trust files and config, in a temp dir.
type daemonFiles struct {
	dir, config, hostKey, auth, policy, audit string
}

func newDaemonFiles(t *testing.T) *daemonFiles {
	t.Helper()
	dir := t.TempDir()
	d := &daemonFiles{dir: dir, config: filepath.Join(dir, "signetd.yaml"), hostKey: filepath.Join(dir, "keys", "host_key"),
		auth: filepath.Join(dir, "authorized_keys"), policy: filepath.Join(dir, "policy.yaml"), audit: filepath.Join(dir, "log", "audit.jsonl")}
	pub, err := keys.Generate(filepath.Join(dir, "op_key"), "alice", nil)
	if err != nil {
		t.Fatal(err)
	}
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub)))
	writeFile(t, d.auth, `roles="admin",name="alice" `+line+"\n", 0o644)
	writeFile(t, d.policy, "rules:\n  - roles: [admin]\n    allow: [\"*\"]\n", 0o644)
	return d
}

// write writes a config start-up accepts, with the given top-level
// lines in place of the defaults of the same key.
func (d *daemonFiles) write(t *testing.T, lines ...string) {
	t.Helper()
	base := map[string]string{
		"identity":        "identity: web1",
		"collective":      "collective: signet",
		"nats":            "nats: {urls: [\"nats://127.0.0.1:1\"]}",
		"host_key":        "host_key: " + d.hostKey,
		"authorized_keys": "authorized_keys: " + d.auth,
		"policy":          "policy: " + d.policy,
		"audit_log":       "audit_log: " + d.audit,
	}
	for _, l := range lines {
		k, _, _ := strings.Cut(l, ":")
		base[k] = l
	}
	var b strings.Builder
	for _, v := range base {
		b.WriteString(v + "\n")
	}
	writeFile(t, d.config, b.String(), 0o644)
}

func writeFile(t *testing.T, p, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}

// runDaemon runs signetd in-process; a start that passes every check
// runs until timeout (the broker address is unreachable).
func runDaemon(t *testing.T, timeout time.Duration, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var out, errb bytes.Buffer
	code = Main(ctx, args, IO{Out: &out, Err: &errb, Getenv: func(string) string { return "" }})
	return code, out.String(), errb.String()
}

// TestDaemonCheckRefusesWhatStartRefuses runs each bad config through
// `signetd --check` and a real start: both must refuse it, with the same
// exit code and the same message naming the key, and neither may panic.
func TestDaemonCheckRefusesWhatStartRefuses(t *testing.T) {
	tests := []struct {
		name  string
		lines []string
		setup func(t *testing.T, d *daemonFiles)
		want  string
	}{
		{name: "identity with a space", lines: []string{`identity: "web 1"`}, want: `identity: invalid identity "web 1"`},
		{name: "collective with a dot", lines: []string{"collective: prod.eu"}, want: `collective: invalid collective "prod.eu"`},
		{name: "negative registry_ttl", lines: []string{"registry_ttl: -3s"}, want: "registry_ttl: must be between 5s and 1h, got -3s"},
		{name: "huge registry_ttl", lines: []string{"registry_ttl: 48h"}, want: "registry_ttl: must be between 5s and 1h, got 48h"},
		{name: "negative max_ttl", lines: []string{"max_ttl: -1m"}, want: "max_ttl: must be between 1s and 24h, got -1m"},
		{name: "negative clock_skew", lines: []string{"clock_skew: -5s"}, want: "clock_skew: must be between 1s and 10m, got -5s"},
		{name: "negative action_timeout", lines: []string{"action_timeout: -1s"}, want: "action_timeout: must be between 1s and 24h"},
		{name: "negative shutdown_timeout", lines: []string{"shutdown_timeout: -1s"}, want: "shutdown_timeout: must be between 1s and 24h"},
		{name: "negative max_concurrent", lines: []string{"max_concurrent: -2"}, want: "max_concurrent: must be between 1 and 1024, got -2"},
		{name: "tiny max_request_bytes", lines: []string{"max_request_bytes: 10"}, want: "max_request_bytes: must be between 1024 and 8388608, got 10"},
		{name: "bad fact name", lines: []string{`facts: {"bad key": x}`}, want: `facts: invalid fact name "bad key"`},
		{name: "bad log level", lines: []string{"log: {level: loud}"}, want: `log.level: "loud"`},
		{name: "unknown plugin", lines: []string{"plugins: {nosuch: {}}"}, want: `plugin "nosuch" is not in this signetd's whitelist`},
		{name: "audit log below a file", setup: func(t *testing.T, d *daemonFiles) {
			d.write(t, "audit_log: "+filepath.Join(d.auth, "audit.jsonl"))
		}, want: "audit_log: " + "cannot create"},
		{name: "missing nats password file", lines: []string{`nats: {urls: ["nats://127.0.0.1:1"], user: u, password_file: /nonexistent/pw}`},
			want: "nats.password_file: open /nonexistent/pw"},
		{name: "missing nats creds", lines: []string{`nats: {urls: ["nats://127.0.0.1:1"], creds: /nonexistent/creds}`},
			want: "nats.creds: open /nonexistent/creds"},
		{name: "world-writable policy", setup: func(t *testing.T, d *daemonFiles) {
			if err := os.Chmod(d.policy, 0o666); err != nil {
				t.Fatal(err)
			}
		}, want: "has mode 0666"},
		{name: "host key readable by others", setup: func(t *testing.T, d *daemonFiles) {
			if _, err := keys.LoadHostKey(d.hostKey); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(d.hostKey, 0o644); err != nil {
				t.Fatal(err)
			}
		}, want: "has mode 0644: group and others must not have access"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := newDaemonFiles(t)
			d.write(t, tc.lines...)
			if tc.setup != nil {
				tc.setup(t, d)
			}
			checkCode, checkOut, checkErr := runDaemon(t, 20*time.Second, "-c", d.config, "--check")
			startCode, _, startErr := runDaemon(t, 3*time.Second, "-c", d.config, "--log-format", "json")
			if checkCode == 0 {
				t.Fatalf("--check accepted it: %s", checkOut)
			}
			if startCode == 0 {
				t.Fatalf("start accepted it")
			}
			if !strings.Contains(checkErr, tc.want) {
				t.Errorf("--check said %q, want %q in it", checkErr, tc.want)
			}
			if checkCode != startCode || checkErr != withoutLogs(startErr) {
				t.Errorf("--check and start differ:\n--check: exit %d %q\nstart:   exit %d %q", checkCode, checkErr, startCode, startErr)
			}
		})
	}
}

// withoutLogs drops the JSON log lines start-up writes to stderr.
func withoutLogs(s string) string {
	var b strings.Builder
	for _, l := range strings.SplitAfter(s, "\n") {
		if !strings.HasPrefix(l, "{") {
			b.WriteString(l)
		}
	}
	return b.String()
}

// TestDaemonCheckHasNoSideEffects: --check creates no host key, key
// directory or audit log directory.
func TestDaemonCheckHasNoSideEffects(t *testing.T) {
	d := newDaemonFiles(t)
	d.write(t)
	code, out, errOut := runDaemon(t, 20*time.Second, "-c", d.config, "--check")
	if code != 0 || !strings.Contains(out, "config ok: identity web1") {
		t.Fatalf("exit %d: %s %s", code, out, errOut)
	}
	for _, p := range []string{filepath.Dir(d.hostKey), filepath.Dir(d.audit)} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("--check created %s", p)
		}
	}
}

// TestDaemonPIDFileRefusesSymlink: a link planted at the pid file path
// must not make signetd (root) write through it.
func TestDaemonPIDFileRefusesSymlink(t *testing.T) {
	d := newDaemonFiles(t)
	d.write(t)
	victim := filepath.Join(d.dir, "victim")
	writeFile(t, victim, "precious\n", 0o644)
	pid := filepath.Join(d.dir, "signetd.pid")
	if err := os.Symlink(victim, pid); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := runDaemon(t, 3*time.Second, "-c", d.config, "--pid-file", pid, "--log-format", "json")
	if b, _ := os.ReadFile(victim); string(b) != "precious\n" {
		t.Fatalf("signetd wrote through the planted link: victim now holds %q", b)
	}
	if code == 0 || !strings.Contains(errOut, "is a symbolic link; refusing to follow it") {
		t.Fatalf("exit %d, stderr %q: want a refusal of the link", code, errOut)
	}
}

func TestWritePIDFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "signetd.pid")
	writeFile(t, p, "stale\n", 0o600)
	remove, err := writePIDFile(p, 4242)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(p)
	if err != nil || fi.Mode() != 0o644 {
		t.Fatalf("pid file %v, %v: want a 0644 regular file", fi, err)
	}
	if b, _ := os.ReadFile(p); string(b) != strconv.Itoa(4242)+"\n" {
		t.Fatalf("pid file holds %q", b)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("left temporary files: %v", ents)
	}
	remove()
	if _, err := os.Lstat(p); !os.IsNotExist(err) {
		t.Fatalf("pid file still there after remove: %v", err)
	}
	// A pid file another process has taken over is not removed.
	if _, err := writePIDFile(p, 4242); err != nil {
		t.Fatal(err)
	}
	writeFile(t, p, "999\n", 0o644)
	remove()
	if _, err := os.Lstat(p); err != nil {
		t.Fatalf("removed a pid file that is not ours: %v", err)
	}
	// Not a regular file.
	sub := filepath.Join(dir, "dir.pid")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := writePIDFile(sub, 1); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("got %v", err)
	}
}
