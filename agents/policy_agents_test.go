package agents

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/signetbus/signet/plugins"
)

// A policy naming an agent one typo away from one this host offers is
// refused at load, so the rule is fixed instead of never matching.
func TestPolicyAgentTypoRefusedAtLoad(t *testing.T) {
	f := newFixture(t, "ops", "rules:\n  - roles: [ops]\n    allow: [\"slow.*\"]\n")
	os.WriteFile(f.cfg.Policy, []byte("rules:\n  - roles: [ops]\n    allow: [\"slwo.*\"]\n"), 0o600)
	_, err := NewHost(HostOptions{Identity: "web1", Collective: "t",
		Plugins: map[string]plugins.Plugin{"slow": slow{}}, AuthorizedKeys: f.cfg.AuthorizedKeys, Policy: f.cfg.Policy, ActionTimeout: time.Minute})
	want := filepath.Join(f.dir, "policy.yaml") + `:3: rules[1].allow[1] "slwo.*": no agent "slwo"; did you mean "slow"?`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("got %v\nwant %s", err, want)
	}
}
