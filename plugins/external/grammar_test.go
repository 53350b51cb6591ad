package external_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/signetbus/signet/agents"
	"github.com/signetbus/signet/plugins/external"
)

const restoreScript = "#!/bin/sh\necho '{\"summary\": \"ok\"}'\n"

func restoreDecl(name, action string) string {
	return `{"name": "` + name + `", "description": "restore the database",
  "actions": [{"name": "` + action + `", "description": "restore one backup"}]}`
}

// TestExternalNamesFollowTheAgentGrammar: the external loader and signetd
// share one name grammar. A plugin the loader accepts must start in a
// host; a name the host would refuse (db-restore) is refused at load, with
// the file and the grammar named, and the good plugin beside it still
// loads and starts.
func TestExternalNamesFollowTheAgentGrammar(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("external plugins must be owned by root: this test writes such files and needs to run as root (CI does)")
	}
	dir := filepath.Join(t.TempDir(), "plugins.d")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name, content string, mode os.FileMode) {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(p, mode)
	}
	write("db-restore.json", restoreDecl("db-restore", "run"), 0o644)
	write("db-restore", restoreScript, 0o755)
	write("db_restore.json", restoreDecl("db_restore", "run"), 0o644)
	write("db_restore", restoreScript, 0o755)
	write("pg.json", restoreDecl("pg", "full-restore"), 0o644)
	write("pg", restoreScript, 0o755)

	got, err := external.Load(dir, external.Options{})
	if _, ok := got["db-restore"]; ok {
		t.Error("the loader accepted db-restore, a name signetd refuses")
	}
	if _, ok := got["pg"]; ok {
		t.Error("the loader accepted the action full-restore, a name signetd refuses")
	}
	if err == nil {
		t.Fatal("no error for db-restore and full-restore")
	}
	for _, want := range []string{filepath.Join(dir, "db-restore.json"), `"db-restore"`, "lowercase letters, digits and _", "db_restore", `"full-restore"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("load error %q does not say %q", err, want)
		}
	}
	if _, ok := got["db_restore"]; !ok {
		t.Fatalf("db_restore was not loaded: %v", err)
	}

	// What the loader accepted starts in a host.
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	sp, _ := ssh.NewPublicKey(pub)
	keys := filepath.Join(t.TempDir(), "authorized_keys")
	os.WriteFile(keys, []byte(`roles="admin",name="alice" `+strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sp)))+"\n"), 0o600)
	policy := filepath.Join(t.TempDir(), "policy.yaml")
	os.WriteFile(policy, []byte("rules:\n  - roles: [admin]\n    allow: [\"*\"]\n"), 0o600)
	h, err := agents.NewHost(agents.HostOptions{Identity: "db1", Collective: "t", Plugins: got, AuthorizedKeys: keys, Policy: policy})
	if err != nil {
		t.Fatalf("a host refused what the loader accepted: %v", err)
	}
	if !strings.Contains(strings.Join(h.Node().Agents, " "), "db_restore") {
		t.Fatalf("host agents %v", h.Node().Agents)
	}
}
