package cli

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/signetbus/signet/workflows/gatelab"
)

// TestDemoCanary: `signet demo --canary` deploys web1 first, bakes it
// with its health check and metric gates checked against a real
// Prometheus (and the stage's Alertmanager), promotes it, and rolls the
// rest of the fleet.
func TestDemoCanary(t *testing.T) {
	needReal(t)
	if gatelab.PrometheusBin() == "" {
		t.Skip("prometheus is not installed (apt install prometheus)")
	}
	code, out, _ := runDemo(t, "--hosts", "3", "--canary", "--dir", filepath.Join(t.TempDir(), "fleet"))
	if code != ExitOK {
		t.Fatalf("exit %d, want 0", code)
	}
	for _, want := range []string{"--canary: prometheus http://127.0.0.1:", "canary:\n  hosts: [web1]\n  bake: 5s", "batch 1/2: web1\n",
		"canary web1: baking: baking for 5s, checked every 1s", "  gate error-rate       pass", "  gate no-page          pass",
		"canary web1: promoted: promoted by auto", "every host serves 1.1"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if p, b := strings.Index(out, "promoted by auto"), strings.Index(out, "batch 2/2: web2 web3"); p < 0 || b < p {
		t.Errorf("want web2 and web3 started only after the canary was promoted")
	}
}
