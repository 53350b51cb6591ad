package deploy

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestDeployPreflightMissingHost kills one responder of the real stage
// (its registry entry outlives it, as after a crash) and runs `signet
// deploy`: --plan names it as missing; a run refuses to start, touching no
// host, and says how to go on; --allow-missing deploys every other host
// and leaves the dead one alone. On the old code the run started and
// failed on that host in the middle of the fleet.
func TestDeployPreflightMissingHost(t *testing.T) {
	s := startStage(t)
	op := operator(t, s)
	batches := plan(t, s, op, "1.1")
	victim := batches[1][0]
	s.Lab.KillHost(victim)

	code, out, errOut := signet(t, s, nil, "deploy", "demo", "1.1", "--env", s.Env, "--plan")
	if code != 0 {
		t.Fatalf("deploy --plan: exit %d\n%s", code, errOut)
	}
	for _, want := range []string{"preflight: 6 hosts expected (registry, hosts ", "5 answered a ping", "  missing: " + victim + ": no responders", "unless --allow-missing"} {
		if !strings.Contains(out, want) {
			t.Errorf("plan lacks %q:\n%s", want, out)
		}
	}

	before := auditSizes(t, s)
	code, _, errOut = signet(t, s, nil, "deploy", "demo", "1.1", "--env", s.Env, "--yes")
	if code != 1 || !strings.Contains(errOut, "1 of 6 expected hosts missing, nothing was touched: "+victim) || !strings.Contains(errOut, "hint: ") || !strings.Contains(errOut, "--allow-missing") {
		t.Fatalf("deploy with %s dead: exit %d, stderr:\n%s\nwant exit 1 naming it, with a hint", victim, code, errOut)
	}
	for h, n := range auditSizes(t, s) {
		// The preflight ping is audited like any request; nothing else
		// may have reached a host.
		if h != victim && n-before[h] > 4096 {
			t.Errorf("%s: audit log grew by %d bytes on a refused deploy", h, n-before[h])
		}
	}
	for h, v := range s.Serving(context.Background()) {
		if v != "1.0" && h != victim {
			t.Errorf("%s serves %s after a refused deploy, want 1.0", h, v)
		}
	}

	code, out, errOut = signet(t, s, nil, "deploy", "demo", "1.1", "--env", s.Env, "--yes", "--allow-missing")
	if code != 0 {
		t.Fatalf("deploy --allow-missing: exit %d\n%s\n%s", code, out, errOut)
	}
	if !strings.Contains(out, "without 1 missing hosts (--allow-missing: "+victim+")") {
		t.Errorf("run output does not name the missing host:\n%s", out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for h, v := range s.Serving(ctx) {
		if h != victim && v != "1.1" {
			t.Errorf("%s serves %q, want 1.1", h, v)
		}
	}
}
