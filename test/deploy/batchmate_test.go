package deploy

import (
	"testing"
	"time"

	"github.com/signetbus/signet/workflows"
	"github.com/signetbus/signet/workflows/deploy"
)

// TestBatchMateBackInRotation is the demo's web3 and web4 with the app file
// as it is (no policy set): the first host of batch 2 fails its package
// update while its batch-mate is mid-deploy. The batch-mate finishes its
// own steps and is back in rotation at 1.1; only the failed host is left
// out (before, the batch-mate was left stopped and drained: two hosts lost
// where one failed). No show stat sample has more than the batch size out.
// The failure is a broken package, so that it comes while the batch-mate
// is mid-deploy.
func TestBatchMateBackInRotation(t *testing.T) {
	s := startStage(t)
	op := operator(t, s)
	a := loadApp(t, s)
	batches := plan(t, s, op, "1.1")
	victim, mate := batches[1][0], batches[1][1]
	if err := s.BreakPackage(victim, "1.1"); err != nil {
		t.Fatal(err)
	}
	marks := auditMarks(t, s)
	rec := &recorder{}
	w := watchRotation(s, 25*time.Millisecond)
	recap, err := deploy.Run(testCtx(t), nil, deployOpts(s, op, "1.1", rec))
	samples, errs := w.Stop()
	if err == nil || recap == nil || recap.Status != workflows.StatusFailed {
		t.Fatalf("deploy: %v, want %s's update failure", err, victim)
	}
	t.Logf("deploy error: %v", err)
	rec.done(t)
	for _, h := range append(batches[0], mate) {
		if got := recap.Host(h).Status; got != workflows.HostDone {
			t.Errorf("recap %s: %s, want done", h, got)
		}
		if st := fleet(t, s)[h]; st.Installed != "1.1" || st.Serves != "1.1" || st.HAProxy != "UP" || st.Silenced {
			t.Errorf("%s: %s; want 1.1 in service: UP, no silence", h, st)
		}
	}
	wantHeld(t, s, victim, "1.0")
	if len(recap.OutOfRotation) != 1 || recap.OutOfRotation[0].Host != victim {
		t.Errorf("recap out of rotation %v, want only %s", recap.OutOfRotation, victim)
	}
	for _, h := range batches[2] {
		wantUntouched(t, s, a, marks, h, "1.0")
	}
	size := len(batches[0])
	for i, out := range samples {
		if len(out) > size {
			t.Errorf("show stat sample %d: %v out of rotation, more than the batch size %d", i, out, size)
			break
		}
	}
	t.Logf("%d show stat samples, %d errors", len(samples), len(errs))
	wantAuditMatchesEvents(t, s, a, marks, rec.Events())
}
