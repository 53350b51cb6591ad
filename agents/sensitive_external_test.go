package agents

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/signetbus/signet/bus"
	"github.com/signetbus/signet/plugins"
	"github.com/signetbus/signet/plugins/external"
)

// TestExternalPluginSensitiveInput: an external plugin's declaration marks
// an input "sensitive": true; the program echoes it on stderr (logged), in
// its JSON error and in its summary. The host's reply and log never carry
// it, and SensitiveParams reports the input for the audit log.
func TestExternalPluginSensitiveInput(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("external plugins must be owned by root: this test writes such files and needs to run as root (CI does)")
	}
	dir := filepath.Join(t.TempDir(), "plugins.d")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	decl := `{"name": "dbrestore", "description": "restore", "actions": [
	  {"name": "restore", "description": "restore one backup", "inputs": [
	    {"name": "backup", "description": "date", "type": "string", "required": true},
	    {"name": "dsn_phrase", "description": "database passphrase", "type": "string", "sensitive": true, "pattern": "[A-Za-z0-9]{8,}"}]}]}`
	script := "#!/bin/sh\ninput=$(cat)\necho \"pg_restore: auth failed for $input\" >&2\n" +
		"case \"$input\" in *ok*) printf '{\"summary\": \"restored with %s\"}\\n' \"$input\" | tr -d '\\n' | sed 's/\"params\":{[^}]*}//'; echo ;;\n" +
		"*) printf '{\"error\": \"refused: %s\"}\\n' \"$(echo \"$input\" | tr -d '\"')\"; exit 3 ;; esac\n"
	for name, c := range map[string]struct {
		s    string
		mode os.FileMode
	}{"dbrestore.json": {decl, 0o644}, "dbrestore": {script, 0o755}} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(c.s), c.mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(p, c.mode)
	}
	ext, err := external.Load(dir, external.Options{})
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, "admin", "rules:\n  - roles: [admin]\n    allow: [\"*\"]\n")
	var logs bytes.Buffer
	h, err := NewHost(HostOptions{Identity: "web1", Collective: "t", Plugins: map[string]plugins.Plugin{"dbrestore": ext["dbrestore"]},
		AuthorizedKeys: f.cfg.AuthorizedKeys, Policy: f.cfg.Policy, ActionTimeout: time.Minute,
		Logger: slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	if s := h.SensitiveParams("dbrestore", "restore"); !s["dsn_phrase"] || s["backup"] {
		t.Fatalf("SensitiveParams = %v, want only dsn_phrase", s)
	}
	p, _ := h.LookupKey(f.op.PublicKey().Marshal())
	for _, tc := range []struct{ phrase, status string }{{"Sup3rSecretPhrase", "failed"}, {"bad phrase!", "refused"}} {
		rep := h.Handle(context.Background(), &bus.Call{Principal: p, Request: &bus.Request{ID: "r", Agent: "dbrestore", Action: "restore",
			Params: map[string]any{"backup": "2024-05-01", "dsn_phrase": tc.phrase}}})
		b, _ := json.Marshal(rep)
		if string(rep.Status) != tc.status {
			t.Errorf("%q: want %s, got %s", tc.phrase, tc.status, b)
		}
		if strings.Contains(string(b), tc.phrase) || strings.Contains(logs.String(), tc.phrase) {
			t.Errorf("%q echoed:\nreply %s\nlog %s", tc.phrase, b, logs.String())
		}
	}
	if !strings.Contains(logs.String(), "pg_restore: auth failed") {
		t.Errorf("the program's stderr was not logged at all:\n%s", logs.String())
	}
}
