package deploy

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/signetbus/signet/workflows"
	"github.com/signetbus/signet/workflows/deploy"
)

// TestDeadLoadBalancer: every stage host runs the haproxy agent (an
// HAProxy on every host, as the demo runs it). The first host of batch 2
// has its responder killed as its start step begins, with max_failures 1.
// Before, its healthy batch-mate failed too: its enable waited for every
// registered HAProxy host, the dead one included, and then failed naming
// it, leaving the batch-mate out of rotation. Now the batch-mate's enable
// succeeds on the HAProxy hosts that answer and the dead one is recorded
// against it in the recap; the hosts of batch 3 are observed, drained and
// enabled without asking the dead host at all (no wait), and are recorded
// as not reached by it. Every host but the dead one ends at 1.1 in
// rotation. After the host comes back, a resume finishes it and, every
// HAProxy host answering again, clears the record of missed changes.
func TestDeadLoadBalancer(t *testing.T) {
	s := startStage(t)
	op := operator(t, s)
	// Short stop and drain timeouts: the dead host's start and the
	// batch-mate's enable each wait theirs out once.
	appFile := appVariant(t, s, map[string]string{"stop_timeout: 20s": "stop_timeout: 3s", "drain_timeout: 10s": "drain_timeout: 1s",
		"on_failure: hold\n": "on_failure: hold\nmax_failures: \"1\"\n"})
	a, err := deploy.LoadApp(appFile)
	if err != nil {
		t.Fatal(err)
	}
	batches := planFile(t, s, op, appFile, "1.1")
	victim, mate := batches[1][0], batches[1][1]
	marks := auditMarks(t, s)
	rec := &recorder{hook: func(e workflows.Event) {
		if e.Type == workflows.EventStepStart && e.Host == victim && e.Step == deploy.StepStart {
			s.Lab.KillHost(victim)
		}
	}}
	o := deployOpts(s, op, "1.1", rec)
	o.AppFile = appFile
	recap, err := deploy.Run(testCtx(t), nil, o)
	var fe *workflows.FailuresError
	if !errors.As(err, &fe) || fe.Spent || len(fe.Failures) != 1 || fe.Failures[0].Host != victim || fe.Failures[0].Step != deploy.StepStart {
		t.Fatalf("deploy: %v; want only %s failed at start, within max_failures 1", err, victim)
	}
	t.Logf("deploy error: %v", err)
	rec.done(t)
	for _, h := range append(append(slices.Clone(batches[0]), mate), batches[2]...) {
		wantInService(t, s, recap, h, "1.1")
	}
	wantHeld(t, s, victim, "1.1")

	by := map[string][]string{}
	for _, u := range recap.Unreached {
		by[u.Host] = u.By
	}
	for _, h := range append([]string{mate}, batches[2]...) {
		if !slices.Equal(by[h], []string{victim}) {
			t.Errorf("recap unreached %s: %v, want [%s]", h, by[h], victim)
		}
	}
	for _, h := range batches[0] {
		if len(by[h]) != 0 {
			t.Errorf("recap unreached %s: %v, want none: its drain and enable were before the kill", h, by[h])
		}
	}
	ev := rec.Events()
	if e, _ := stepDone(ev, mate, deploy.StepEnable); e.Status == workflows.StepFailed || !slices.ContainsFunc(e.Results, func(r workflows.Result) bool { return r.Host == victim && r.NoResponse }) {
		t.Errorf("%s enable: %s %q results %+v; want done, with no response from %s", mate, e.Status, e.Error, e.Results, victim)
	}
	for _, h := range batches[2] {
		for _, step := range []string{deploy.StepDrain, deploy.StepEnable} {
			e, _ := stepDone(ev, h, step)
			if e.Status == workflows.StepFailed || len(e.Results) != hosts-1 || slices.ContainsFunc(e.Results, func(r workflows.Result) bool { return r.Host == victim }) {
				t.Errorf("%s %s: %s, %d results; want done on the %d live HAProxy hosts, %s not asked", h, step, e.Status, len(e.Results), hosts-1, victim)
			}
		}
	}
	var text strings.Builder
	recap.WriteText(&text)
	if !strings.Contains(text.String(), mate+" (not reached: "+victim+")") {
		t.Errorf("recap text does not name %s as not reached by %s:\n%s", mate, victim, text.String())
	}
	wantAuditMatchesEvents(t, s, a, marks, ev)

	if err := s.Lab.StartHost(victim); err != nil {
		t.Fatal(err)
	}
	waitAnswers(t, op, victim)
	o.Output = &recorder{}
	recap2, err := deploy.Resume(testCtx(t), nil, recap.Run, o)
	if err != nil || recap2.Status != workflows.StatusDone {
		t.Fatalf("resume after the host came back: %v", err)
	}
	if len(recap2.Unreached) != 0 {
		t.Errorf("resume recap unreached %v, want none: every HAProxy host answered again", recap2.Unreached)
	}
	wantDeployed(t, s, "1.1")
}
