package deploy

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/signetbus/signet/workflows"
	"github.com/signetbus/signet/workflows/deploy"
)

// TestWindowOnTheStage deploys the real stage with strategy window
// (batches of two, so max_unavailable 2, and at most one host per zone
// out) and max_failures 1, with the package broken on the first host,
// while a goroutine samples HAProxy's show stat every 25ms. The window goes
// on past the failure: every host of the other zones is deployed and back
// in rotation, the failed one is held, and its zone-mate is never started
// (the held host fills its zone's place, as with max_unavailable_per_zone
// in batches) and is named in the error. No sample ever has more than 2
// servers out of rotation (the held host counting), nor two of one zone.
func TestWindowOnTheStage(t *testing.T) {
	s := startStage(t)
	op := operator(t, s)
	appFile := policyVariant(t, s, "strategy: window\nmax_failures: \"1\"\n")
	batches := planFile(t, s, op, appFile, "1.1")
	victim := batches[0][0]
	if err := s.BreakPackage(victim, "1.1"); err != nil {
		t.Fatal(err)
	}
	zone := map[string]string{}
	for _, h := range s.Hosts {
		zone[h.Identity] = h.Zone
	}
	rec := &recorder{}
	o := deployOpts(s, op, "1.1", rec)
	o.AppFile = appFile
	w := watchRotation(s, 25*time.Millisecond)
	recap, err := deploy.Run(testCtx(t), nil, o)
	samples, errs := w.Stop()
	var fe *workflows.FailuresError
	if !errors.As(err, &fe) || len(fe.Failures) != 1 || fe.Failures[0].Host != victim || fe.Spent {
		t.Fatalf("deploy: %v; want %s failed within the budget", err, victim)
	}
	var mates []string
	for _, h := range flatten(batches) {
		if h != victim && zone[h] == zone[victim] {
			mates = append(mates, h)
		}
	}
	if fe.Capacity == nil || !slices.Equal(fe.Capacity.Skipped, mates) {
		t.Errorf("capacity %+v, want %v not started for the zone cap", fe.Capacity, mates)
	}
	t.Logf("deploy error: %v", err)
	rec.done(t)
	wantCapKept(t, samples, errs, 2)
	for i, out := range samples {
		seen := map[string]string{}
		for _, h := range out {
			if other, dup := seen[zone[h]]; dup {
				t.Errorf("show stat sample %d: %s and %s of zone %s out at once", i, other, h, zone[h])
			}
			seen[zone[h]] = h
		}
	}
	for _, h := range flatten(batches) {
		switch {
		case slices.Contains(mates, h):
			if recap.Host(h).Status != workflows.HostPending {
				t.Errorf("%s (zone-mate of %s): %s, want pending", h, victim, recap.Host(h).Status)
			}
		case h != victim:
			wantInService(t, s, recap, h, "1.1")
		}
	}
	wantHeld(t, s, victim, "1.0")
	if recap.Limits == nil || recap.Limits.Strategy != workflows.StrategyWindow {
		t.Errorf("recap limits %+v, want the window", recap.Limits)
	}
}
