package plugins

import (
	"context"
	"strings"
	"testing"

	"github.com/signetbus/signet/bus"
)

// TestPackage drives the package plugin on web1 through the bus against
// real apt-get and dpkg in web1's own dpkg root: status reports 1.0,
// check_version passes for 1.0 and fails for 1.1 saying want and installed,
// update to 1.1 changes the host (previous 1.0) and, after a restart through
// the service plugin, the app serves 1.1; a second update changes nothing;
// installing a version no repository offers fails saying so; refresh runs
// apt-get update. web1 is put back on 1.0 at the end.
func TestPackage(t *testing.T) {
	s, _ := sharedStage(t)
	ctx := context.Background()
	const host = "web1"
	pkg := map[string]any{"package": s.App}
	with := func(version string) map[string]any { return map[string]any{"package": s.App, "version": version} }

	t.Cleanup(func() {
		// Back to the stage's first version, for the other tests and -count.
		if c := do(t, host, "package", "update", with("1.0")); c.Result.Status != bus.ResultOK {
			t.Errorf("put %s back on 1.0: %s", host, c.Result.Error)
		}
	})

	rep := mustOK(t, host, "package", "status", pkg)
	if rep.Data["package"] != s.App || rep.Data["installed"] != true || rep.Data["version"] != "1.0" || rep.Data["state"] != "installed" || rep.Data["held"] != false {
		t.Fatalf("status: want %s 1.0 installed, not held; got %v", s.App, rep.Data)
	}
	if rep.Changed {
		t.Errorf("status: changed=true, want false")
	}

	if rep := mustOK(t, host, "package", "check_version", with("1.0")); rep.Data["version"] != "1.0" || rep.Changed {
		t.Errorf("check_version 1.0: want version 1.0 unchanged, got changed=%v %v", rep.Changed, rep.Data)
	}
	rep = mustFail(t, host, "package", "check_version", with("1.1"))
	if want := "package " + s.App + ": want 1.1, installed 1.0"; !strings.Contains(rep.Error, want) {
		t.Errorf("check_version 1.1: want an error containing %q, got %q", want, rep.Error)
	}

	rep = mustOK(t, host, "package", "update", with("1.1"))
	if !rep.Changed || rep.Data["version"] != "1.1" || rep.Data["previous"] != "1.0" || rep.Data["installed"] != true {
		t.Fatalf("update 1.1: want changed, version 1.1, previous 1.0; got changed=%v %v", rep.Changed, rep.Data)
	}
	if rep := mustOK(t, host, "package", "status", pkg); rep.Data["version"] != "1.1" {
		t.Errorf("status after update: want 1.1 in the dpkg database, got %v", rep.Data)
	}
	// The deploy's order: restart the service on the new package, then the
	// app serves what the package installed.
	if rep := mustOK(t, host, "service", "restart", map[string]any{"service": s.App}); !rep.Changed || rep.Data["active"] != true {
		t.Fatalf("service restart after update: %v", rep.Data)
	}
	if v, err := s.Serves(ctx, host); err != nil || v != "1.1" {
		t.Errorf("%s serves %q (%v) after update and restart, want 1.1", host, v, err)
	}
	for _, other := range []string{"web2", "web3"} {
		if v, err := s.Serves(ctx, other); err != nil || v != "1.0" {
			t.Errorf("%s serves %q (%v); a direct update of %s must not touch it", other, v, err, host)
		}
	}
	mustOK(t, host, "package", "check_version", with("1.1"))

	rep = mustOK(t, host, "package", "update", with("1.1"))
	if rep.Changed || rep.Data["version"] != "1.1" {
		t.Errorf("second update 1.1: want changed=false at 1.1, got changed=%v %v", rep.Changed, rep.Data)
	}
	if _, ok := rep.Data["previous"]; ok {
		t.Errorf("second update 1.1: data.previous is only for a change, got %v", rep.Data)
	}

	rep = mustFail(t, host, "package", "install", with("9.9"))
	for _, want := range []string{"install " + s.App + " 9.9", "version 9.9 is not available from the configured repositories"} {
		if !strings.Contains(rep.Error, want) {
			t.Errorf("install 9.9: want an error containing %q, got %q", want, rep.Error)
		}
	}
	if rep := mustOK(t, host, "package", "status", pkg); rep.Data["version"] != "1.1" {
		t.Errorf("status after the failed install: want 1.1 still, got %v", rep.Data)
	}

	rep = mustOK(t, host, "package", "refresh", map[string]any{})
	if rep.Data["backend"] != "apt" || rep.Changed {
		t.Errorf("refresh: want backend apt, unchanged; got changed=%v %v", rep.Changed, rep.Data)
	}
}
