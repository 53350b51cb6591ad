package signetd

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDaemonRelativePathsFollowTheConfig: relative paths in signetd.yaml
// are relative to the file, not to the directory signetd was started in,
// as the client's are; "~/" is the home directory for every path key.
func TestDaemonRelativePathsFollowTheConfig(t *testing.T) {
	d := newDaemonFiles(t)
	home := t.TempDir()
	t.Setenv("HOME", home)
	os.MkdirAll(filepath.Join(d.dir, "facts.d"), 0o755)
	writeFile(t, filepath.Join(d.dir, "facts.d", "zone.yaml"), "zone: b\n", 0o644)
	os.MkdirAll(filepath.Join(home, "plugins.d"), 0o755)
	d.write(t, "host_key: keys/host_key", "authorized_keys: authorized_keys", "policy: ./policy.yaml",
		"audit_log: log/audit.jsonl", "fact_files: [facts.d/*.yaml]")
	t.Chdir(t.TempDir())
	code, out, errOut := runDaemon(t, 20*time.Second, "-c", d.config, "--check")
	if code != 0 {
		t.Fatalf("relative paths: exit %d: %s", code, errOut)
	}
	if !strings.Contains(out, "config ok") {
		t.Fatalf("%s", out)
	}
	code, out, errOut = runDaemon(t, 20*time.Second, "-c", d.config, "--print-host-key")
	if code != 0 {
		t.Fatalf("print-host-key: exit %d: %s", code, errOut)
	}
	if _, err := os.Stat(d.hostKey); err != nil {
		t.Fatalf("the host key was not made beside the config: %v", err)
	}
	// One line, no blank line to end up in known_hosts.
	if strings.Count(out, "\n") != 1 || !strings.HasPrefix(out, "web1 ssh-ed25519 ") {
		t.Fatalf("--print-host-key printed %q", out)
	}
}

// TestDaemonCheckFirstHour: what a new operator gets wrong, --check
// catches as start-up would, and a bare start creates nothing before it
// fails.
func TestDaemonCheckFirstHour(t *testing.T) {
	t.Run("malformed fact file", func(t *testing.T) {
		d := newDaemonFiles(t)
		writeFile(t, filepath.Join(d.dir, "facts.yaml"), "zone: [b\n", 0o644)
		d.write(t, "fact_files: ["+filepath.Join(d.dir, "facts.yaml")+"]")
		code, out, errOut := runDaemon(t, 20*time.Second, "-c", d.config, "--check")
		if code == 0 || !strings.Contains(errOut, "facts.yaml") {
			t.Fatalf("--check: exit %d %s %s", code, out, errOut)
		}
	})
	t.Run("start fails before creating the host key", func(t *testing.T) {
		d := newDaemonFiles(t)
		d.write(t, "policy: "+filepath.Join(d.dir, "nosuch.yaml"))
		code, _, errOut := runDaemon(t, 5*time.Second, "-c", d.config)
		if code == 0 || !strings.Contains(errOut, "nosuch.yaml") {
			t.Fatalf("start: exit %d %s", code, errOut)
		}
		if _, err := os.Lstat(filepath.Dir(d.hostKey)); err == nil {
			t.Fatalf("a failed start created %s", d.hostKey)
		}
	})
}
