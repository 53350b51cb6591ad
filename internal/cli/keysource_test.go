package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/signetbus/signet/internal/keys"
)

// A wrong passphrase and a .pub file given as the key are each said as
// what they are; neither sends the operator to `signet keygen`.
func TestKeyErrorsSayWhatWentWrong(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "op_key")
	if _, err := keys.Generate(key, "op", []byte("right")); err != nil {
		t.Fatal(err)
	}
	wrong := filepath.Join(dir, "pass")
	os.WriteFile(wrong, []byte("wrong\n"), 0o600)
	cfg := func(k string) string {
		p := filepath.Join(dir, filepath.Base(k)+".yaml")
		os.WriteFile(p, []byte("key: "+k+"\nknown_hosts: "+filepath.Join(dir, "known_hosts")+"\nnats: {urls: [\"nats://127.0.0.1:1\"]}\n"), 0o600)
		return p
	}
	run := func(env map[string]string, args ...string) (int, string) {
		var out, errb bytes.Buffer
		code := Main(context.Background(), args, IO{In: strings.NewReader(""), Out: &out, Err: &errb, Getenv: envMap(env)})
		return code, errb.String()
	}

	code, stderr := run(map[string]string{"SIGNET_PASSPHRASE_FILE": wrong}, "--config", cfg(key), "ping")
	if code == 0 || !strings.Contains(stderr, "wrong passphrase for "+key) || strings.Contains(stderr, "keygen") || strings.Contains(stderr, "x509") {
		t.Errorf("wrong passphrase: exit %d, stderr:\n%s", code, stderr)
	}
	code, stderr = run(nil, "--config", cfg(key), "ping")
	if code == 0 || !strings.Contains(stderr, "encrypted") || !strings.Contains(stderr, "hint: ssh-add "+key) || strings.Count(stderr, "hint:") != 1 {
		t.Errorf("encrypted key, no terminal: exit %d, stderr:\n%s", code, stderr)
	}
	code, stderr = run(nil, "--config", cfg(key+".pub"), "ping")
	if code == 0 || !strings.Contains(stderr, key+".pub is a public key; the private key is "+key) || strings.Contains(stderr, "keygen") || strings.Contains(stderr, "chmod") {
		t.Errorf(".pub as key: exit %d, stderr:\n%s", code, stderr)
	}
	code, stderr = run(nil, "--config", cfg(filepath.Join(dir, "absent")), "ping")
	if code == 0 || !strings.Contains(stderr, "signet keygen") {
		t.Errorf("missing key: exit %d, want the keygen hint, stderr:\n%s", code, stderr)
	}
}
