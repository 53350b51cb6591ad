package deploy

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/signetbus/signet/internal/stage"
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

	before := auditMarks(t, s)
	code, _, errOut = signet(t, s, nil, "deploy", "demo", "1.1", "--env", s.Env, "--yes")
	if code != 1 || !strings.Contains(errOut, "1 of 6 expected hosts missing, nothing was touched: "+victim) || !strings.Contains(errOut, "hint: ") || !strings.Contains(errOut, "--allow-missing") {
		t.Fatalf("deploy with %s dead: exit %d, stderr:\n%s\nwant exit 1 naming it, with a hint", victim, code, errOut)
	}
	onlyPreflightPings(t, s, before)
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

// onlyPreflightPings checks that since marks (audit record counts) every
// host's audit log got nothing but the preflight's rpcutil ping: a --plan
// asks who answers, and touches nothing.
func onlyPreflightPings(t *testing.T, s *stage.Stage, marks map[string]int) {
	t.Helper()
	for _, h := range s.Hosts {
		for _, r := range readAudit(t, s, h.Identity, marks[h.Identity]) {
			if r.Agent != "rpcutil" || r.Action != "ping" {
				t.Errorf("%s: audit record %s.%s (%s) after --plan, want only the preflight ping", h.Identity, r.Agent, r.Action, r.Decision)
			}
		}
	}
}
