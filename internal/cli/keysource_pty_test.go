package cli

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/signetbus/signet/internal/keys"
)

// openPTY opens a pseudo-terminal pair: what the test writes to master,
// signet reads from slave as from a person's terminal.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		m.Close()
		t.Skipf("unlockpt: %v", err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		m.Close()
		t.Skipf("ptsname: %v", err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		m.Close()
		t.Skipf("open pts: %v", err)
	}
	t.Cleanup(func() { s.Close(); m.Close() })
	return m, s
}

// On a terminal, a wrong passphrase is asked again, up to three times.
func TestPassphraseAskedAgainOnTerminal(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "op_key")
	if _, err := keys.Generate(key, "op", []byte("right")); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "client.yaml")
	os.WriteFile(cfg, []byte("key: "+key+"\nknown_hosts: "+filepath.Join(dir, "known_hosts")+"\nnats: {urls: [\"nats://127.0.0.1:1\"]}\n"), 0o600)

	for _, tc := range []struct {
		typed   string
		asked   int
		wrongAt bool // the command ends on a wrong passphrase
	}{
		{"first\nsecond\nright\n", 3, false},
		{"a\nb\nc\n", 3, true},
	} {
		master, slave := openPTY(t)
		go master.Write([]byte(tc.typed))
		var out, errb bytes.Buffer
		Main(context.Background(), []string{"--config", cfg, "ping"}, IO{In: slave, Out: &out, Err: &errb, Getenv: envMap(nil)})
		stderr := errb.String()
		if got := strings.Count(stderr, "Enter passphrase for "+key); got != tc.asked {
			t.Errorf("typed %q: asked %d times, want %d\n%s", tc.typed, got, tc.asked, stderr)
		}
		if got := strings.Count(stderr, "wrong passphrase for "+key+", try again"); got != 2 {
			t.Errorf("typed %q: %d try-again lines, want 2\n%s", tc.typed, got, stderr)
		}
		if ends := strings.Contains(stderr, "signet: keys: wrong passphrase for "+key); ends != tc.wrongAt {
			t.Errorf("typed %q: ends on a wrong passphrase = %v, want %v\n%s", tc.typed, ends, tc.wrongAt, stderr)
		}
		if strings.Contains(stderr, "keygen") {
			t.Errorf("typed %q: keygen hint for a passphrase problem\n%s", tc.typed, stderr)
		}
	}
}
