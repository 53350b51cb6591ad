package facts

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestFromFilesRefusesLoose: facts decide the policy's where conditions
// (env=dev), so whoever can write a fact file can widen what a role may
// run; a fact file others can write is refused like the policy itself.
func TestFromFilesRefusesLoose(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "env.yaml")
	if err := os.WriteFile(p, []byte("env: dev\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, 0o666); err != nil {
		t.Fatal(err)
	}
	_, err := FromFiles([]string{filepath.Join(dir, "*.yaml")})
	if err == nil || !strings.Contains(err.Error(), "has mode 0666") || !strings.Contains(err.Error(), "chmod 644 "+p) {
		t.Fatalf("got %v, want a refusal naming the mode and the fix", err)
	}
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	if m, err := FromFiles([]string{filepath.Join(dir, "*.yaml")}); err != nil || m["env"] != "dev" {
		t.Fatalf("0644 fact file: %v, %v", m, err)
	}
}
