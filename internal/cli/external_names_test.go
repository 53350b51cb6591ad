package cli

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

// TestSignetdExternalPluginNames runs `signetd --check` on a host whose
// plugin directory holds db-restore: the check refuses it, naming the file
// and the name to use instead; renamed db_restore, the same host checks
// ok. A name is never accepted by the loader and then refused by the host.
func TestSignetdExternalPluginNames(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("external plugins must be owned by root: this test writes such files and needs to run as root (CI does)")
	}
	dir := t.TempDir()
	plugDir := filepath.Join(dir, "plugins.d")
	os.Mkdir(plugDir, 0o755)
	os.Chmod(plugDir, 0o755)
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	sp, _ := ssh.NewPublicKey(pub)
	os.WriteFile(filepath.Join(dir, "authorized_keys"), []byte(`roles="admin",name="alice" `+strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sp)))+"\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "policy.yaml"), []byte("rules:\n  - roles: [admin]\n    allow: [\"*\"]\n"), 0o600)
	cfg := filepath.Join(dir, "signetd.yaml")
	os.WriteFile(cfg, []byte("identity: db1\ncollective: t\nauthorized_keys: "+filepath.Join(dir, "authorized_keys")+
		"\npolicy: "+filepath.Join(dir, "policy.yaml")+"\nexternal_dir: "+plugDir+"\n"), 0o600)

	install := func(name string) {
		for _, f := range []struct {
			file, content string
			mode          os.FileMode
		}{
			{name + ".json", `{"name": "` + name + `", "description": "restore the database", "actions": [{"name": "run", "description": "restore"}]}`, 0o644},
			{name, "#!/bin/sh\necho '{}'\n", 0o755},
		} {
			p := filepath.Join(plugDir, f.file)
			os.WriteFile(p, []byte(f.content), f.mode)
			os.Chmod(p, f.mode)
		}
	}
	check := func() (int, string) {
		var out, errb bytes.Buffer
		code := DaemonMain(context.Background(), []string{"-c", cfg, "--check"},
			IO{In: strings.NewReader(""), Out: &out, Err: &errb, Getenv: envMap(nil)})
		return code, out.String() + errb.String()
	}

	install("db-restore")
	code, out := check()
	if code == ExitOK || !strings.Contains(out, filepath.Join(plugDir, "db-restore.json")) || !strings.Contains(out, "db_restore") {
		t.Fatalf("signetd --check with db-restore: exit %d, output %q; want a refusal naming the file and db_restore", code, out)
	}
	os.Remove(filepath.Join(plugDir, "db-restore.json"))
	os.Remove(filepath.Join(plugDir, "db-restore"))
	install("db_restore")
	if code, out := check(); code != ExitOK || !strings.Contains(out, "config ok") {
		t.Fatalf("signetd --check with db_restore: exit %d, output %q", code, out)
	}
}
