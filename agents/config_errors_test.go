package agents

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	_ "github.com/signetbus/signet/plugins/service"
)

// Config errors name the file, the line and the key in the author's
// words, never a Go type; a plugin's section keeps its line numbers
// although it is converted to JSON for the plugin.
func TestConfigErrorsNameFileLineKey(t *testing.T) {
	dir := t.TempDir()
	write := func(doc string) string {
		p := filepath.Join(dir, "signetd.yaml")
		if err := os.WriteFile(p, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}

	p := write("identity: web1\nnats:\n  url: nats://x:4222\n")
	_, err := LoadConfig(p)
	if err == nil || !strings.Contains(err.Error(), p+":3: nats.url: unknown key") || strings.Contains(err.Error(), "agents.") {
		t.Errorf("unknown nats key: %v", err)
	}
	p = write("identity: web1\nnats: nats://x:4222\n")
	_, err = LoadConfig(p)
	if err == nil || !strings.Contains(err.Error(), p+`:2: nats: found a string, want a mapping of keys`) || strings.Contains(err.Error(), "NATSConfig") {
		t.Errorf("nats as a string: %v", err)
	}

	p = write("identity: web1\nplugins:\n  service:\n    backend: systemd\n    sevices: [nginx]\n")
	cfg, err := LoadConfig(p)
	if err != nil {
		t.Fatal(err)
	}
	_, err = LoadPlugins(cfg)
	if err == nil || !strings.Contains(err.Error(), p+":5: plugins.service.sevices: unknown key") || strings.Contains(err.Error(), "json:") {
		t.Errorf("plugin section typo: %v", err)
	}
	p = write("identity: web1\nplugins:\n  service:\n    backend: systemd\n    services: nginx\n")
	cfg, err = LoadConfig(p)
	if err != nil {
		t.Fatal(err)
	}
	_, err = LoadPlugins(cfg)
	if err == nil || !strings.Contains(err.Error(), p+":5: plugins.service.services: found a string, want a list") || strings.Contains(err.Error(), "Go struct") {
		t.Errorf("plugin section type: %v", err)
	}
}
