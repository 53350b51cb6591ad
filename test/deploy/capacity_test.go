package deploy

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/signetbus/signet/internal/stage"
	"github.com/signetbus/signet/workflows"
	"github.com/signetbus/signet/workflows/deploy"
)

// policyVariant is the stage's app file with a capacity policy added.
func policyVariant(t *testing.T, s *stage.Stage, policy string) string {
	t.Helper()
	return appVariant(t, s, map[string]string{"on_failure: hold\n": "on_failure: hold\n" + policy})
}

// wantCapKept checks every show stat sample: never more than limit servers
// out of rotation. It returns the most seen at once.
func wantCapKept(t *testing.T, samples [][]string, errs []error, limit int) int {
	t.Helper()
	if len(samples) < 20 || len(errs) > len(samples)/10 {
		t.Fatalf("%d show stat samples, %d errors (%v): too few to judge", len(samples), len(errs), errs)
	}
	peak, bad := 0, 0
	for i, out := range samples {
		peak = max(peak, len(out))
		if len(out) > limit && bad < 5 {
			bad++
			t.Errorf("show stat sample %d: %d out of rotation %v, more than max_unavailable %d", i, len(out), out, limit)
		}
	}
	t.Logf("%d show stat samples, at most %d servers out of rotation at once (cap %d)", len(samples), peak, limit)
	return peak
}

// wantInService checks that host was deployed and is back in rotation.
func wantInService(t *testing.T, s *stage.Stage, recap *workflows.Recap, host, version string) {
	t.Helper()
	if got := recap.Host(host).Status; got != workflows.HostDone {
		t.Errorf("recap %s: %s, want done", host, got)
	}
	if st := fleet(t, s)[host]; st.Installed != version || st.Serves != version || st.HAProxy != "UP" || st.Silenced {
		t.Errorf("%s: %s; want %s in service: UP, no silence", host, st, version)
	}
}

// TestFailureBudget breaks the package on the first host of batch 1 and on
// both hosts of batch 2 at once, with max_failures 2 and max_unavailable 3,
// while a goroutine samples HAProxy's show stat every 25ms. The failed
// host's batch-mate finishes and is back in rotation (before, it was left
// stopped and drained); batch 2 runs past the first failure; its two
// simultaneous failures spend the budget (3 > 2), so batch 3 is never
// started. No sample has more than 3 servers out of rotation, and the
// recap names the three failed hosts as left out.
func TestFailureBudget(t *testing.T) {
	s := startStage(t)
	op := operator(t, s)
	appFile := policyVariant(t, s, "max_failures: \"2\"\nmax_unavailable: \"3\"\n")
	a, err := deploy.LoadApp(appFile)
	if err != nil {
		t.Fatal(err)
	}
	batches := planFile(t, s, op, appFile, "1.1")
	failed := []string{batches[0][0], batches[1][0], batches[1][1]}
	for _, h := range failed {
		if err := s.BreakPackage(h, "1.1"); err != nil {
			t.Fatal(err)
		}
	}
	marks := auditMarks(t, s)
	o := deployOpts(s, op, "1.1", &recorder{})
	rec := o.Output.(*recorder)
	o.AppFile = appFile
	w := watchRotation(s, 25*time.Millisecond)
	recap, err := deploy.Run(testCtx(t), nil, o)
	samples, errs := w.Stop()
	var fe *workflows.FailuresError
	if !errors.As(err, &fe) || !fe.Spent || len(fe.Failures) != 3 {
		t.Fatalf("deploy: %v; want three failures spending max_failures 2", err)
	}
	t.Logf("deploy error: %v", err)
	var got []string
	for _, f := range fe.Failures {
		got = append(got, f.Host)
		if f.Step != deploy.StepUpdate {
			t.Errorf("%s failed at %s, want update", f.Host, f.Step)
		}
	}
	slices.Sort(got)
	if want := slices.Sorted(slices.Values(failed)); !slices.Equal(got, want) {
		t.Errorf("failed hosts %v, want %v", got, want)
	}
	rec.done(t)
	wantCapKept(t, samples, errs, 3)

	wantInService(t, s, recap, batches[0][1], "1.1")
	for _, h := range failed {
		wantHeld(t, s, h, "1.0")
		if recap.Host(h).Status != workflows.HostFailed {
			t.Errorf("recap %s: %s, want failed", h, recap.Host(h).Status)
		}
	}
	var left []string
	for _, m := range recap.OutOfRotation {
		left = append(left, m.Host)
	}
	slices.Sort(left)
	if !slices.Equal(left, slices.Sorted(slices.Values(failed))) {
		t.Errorf("recap out of rotation %v, want the failed hosts %v", left, failed)
	}
	for _, h := range batches[2] {
		if recap.Host(h).Status != workflows.HostPending {
			t.Errorf("recap %s: %s, want pending: the budget was spent", h, recap.Host(h).Status)
		}
		wantUntouched(t, s, a, marks, h, "1.0")
	}
	if l := recap.Limits; l == nil || l.Failures != 3 || l.MaxFailures != 2 || l.MaxUnavailable != 3 || l.PeakUnavailable > 3 {
		t.Errorf("recap limits %+v", recap.Limits)
	}
	wantAuditMatchesEvents(t, s, a, marks, rec.Events())
}

// TestMaxUnavailable: with batches of two, max_unavailable 2 and
// max_failures 3, the package is broken on the first host of batch 1 and
// the first of batch 3. After the first failure the failed host holds one
// of the two places, so batch 2 runs one host at a time (no two of its
// hosts are ever out together in show stat); after the second, the two
// failed hosts fill the cap and the last host is never started. No show
// stat sample has more than 2 servers out of rotation.
func TestMaxUnavailable(t *testing.T) {
	s := startStage(t)
	op := operator(t, s)
	appFile := policyVariant(t, s, "max_failures: \"3\"\nmax_unavailable: \"2\"\n")
	a, err := deploy.LoadApp(appFile)
	if err != nil {
		t.Fatal(err)
	}
	batches := planFile(t, s, op, appFile, "1.1")
	failed := []string{batches[0][0], batches[2][0]}
	for _, h := range failed {
		if err := s.BreakPackage(h, "1.1"); err != nil {
			t.Fatal(err)
		}
	}
	marks := auditMarks(t, s)
	rec := &recorder{}
	o := deployOpts(s, op, "1.1", rec)
	o.AppFile = appFile
	w := watchRotation(s, 25*time.Millisecond)
	recap, err := deploy.Run(testCtx(t), nil, o)
	samples, errs := w.Stop()
	var ce *workflows.CapacityError
	if !errors.As(err, &ce) || ce.Host != batches[2][1] || !slices.Equal(ce.Out, slices.Sorted(slices.Values(failed))) {
		t.Fatalf("deploy: %v; want %s not started, the cap filled by %v", err, batches[2][1], failed)
	}
	if !strings.Contains(err.Error(), "max_unavailable 2 allows no more") {
		t.Errorf("error %q does not name the cap", err)
	}
	t.Logf("deploy error: %v", err)
	rec.done(t)
	wantCapKept(t, samples, errs, 2)
	for i, out := range samples {
		if slices.Contains(out, batches[1][0]) && slices.Contains(out, batches[1][1]) {
			t.Errorf("show stat sample %d: %v: both hosts of batch 2 out at once, with %s held", i, out, failed[0])
			break
		}
	}
	wantInService(t, s, recap, batches[0][1], "1.1")
	for _, h := range batches[1] {
		wantInService(t, s, recap, h, "1.1")
	}
	for _, h := range failed {
		wantHeld(t, s, h, "1.0")
	}
	if recap.Host(batches[2][1]).Status != workflows.HostPending {
		t.Errorf("recap %s: %s, want pending", batches[2][1], recap.Host(batches[2][1]).Status)
	}
	wantUntouched(t, s, a, marks, batches[2][1], "1.0")
	wantAuditMatchesEvents(t, s, a, marks, rec.Events())
}

// TestMaxUnavailablePerZone: batches of four with allow_same_zone, so that
// a batch holds two hosts of one zone, and max_unavailable_per_zone 1: the
// two never are out of rotation together in any show stat sample. The
// package is broken on a host whose zone-mate comes in the next batch:
// that zone-mate is never started (its zone's place is held), while the
// hosts of the other zones finish.
func TestMaxUnavailablePerZone(t *testing.T) {
	s := startStage(t)
	op := operator(t, s)
	appFile := appVariant(t, s, map[string]string{`batch_size: "2"`: "batch_size: \"4\"\nallow_same_zone: true",
		"on_failure: hold\n": "on_failure: hold\nmax_unavailable_per_zone: \"1\"\nmax_failures: \"1\"\n"})
	a, err := deploy.LoadApp(appFile)
	if err != nil {
		t.Fatal(err)
	}
	batches := planFile(t, s, op, appFile, "1.1")
	if len(batches) != 2 || len(batches[0]) != 4 {
		t.Fatalf("plan %v: want a batch of four, then two", batches)
	}
	var victim, mate string
	for _, h := range batches[0] {
		for _, m := range batches[1] {
			if s.Host(h).Zone == s.Host(m).Zone {
				victim, mate = h, m
			}
		}
	}
	if victim == "" {
		t.Fatalf("plan %v: no host of batch 1 has its zone-mate in batch 2", batches)
	}
	if err := s.BreakPackage(victim, "1.1"); err != nil {
		t.Fatal(err)
	}
	marks := auditMarks(t, s)
	rec := &recorder{}
	o := deployOpts(s, op, "1.1", rec)
	o.AppFile = appFile
	w := watchRotation(s, 25*time.Millisecond)
	recap, err := deploy.Run(testCtx(t), nil, o)
	samples, errs := w.Stop()
	var ce *workflows.CapacityError
	if !errors.As(err, &ce) || ce.Host != mate || !slices.Equal(ce.Out, []string{victim}) {
		t.Fatalf("deploy: %v; want %s not started, zone %s's place held by %s", err, mate, s.Host(mate).Zone, victim)
	}
	t.Logf("deploy error: %v", err)
	rec.done(t)
	wantCapKept(t, samples, errs, 3) // one per zone
	for i, out := range samples {
		zones := map[string]string{}
		for _, h := range out {
			if other, ok := zones[s.Host(h).Zone]; ok {
				t.Errorf("show stat sample %d: %s and %s of zone %s out at once", i, other, h, s.Host(h).Zone)
			}
			zones[s.Host(h).Zone] = h
		}
	}
	for _, b := range batches {
		for _, h := range b {
			if h != victim && h != mate {
				wantInService(t, s, recap, h, "1.1")
			}
		}
	}
	wantHeld(t, s, victim, "1.0")
	wantUntouched(t, s, a, marks, mate, "1.0")
	wantAuditMatchesEvents(t, s, a, marks, rec.Events())
}
