package cli

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/signetbus/signet/workflows"
)

// TestHaltExit: a deploy that ended unfinished says, in its hint, the
// run's recorded state (done, not finished with their marks, not started)
// and the command that resumes it; a run whose last state did not reach
// the broker keeps the hint that says to check before resuming.
func TestHaltExit(t *testing.T) {
	g := &globalOptions{}
	recap := &workflows.Recap{Run: "7f3a09c1", Status: workflows.StatusFailed, Hosts: []workflows.HostRecap{
		{Host: "web1", Status: workflows.HostDone}, {Host: "web2", Status: workflows.HostFailed}, {Host: "web3", Status: workflows.HostPending}},
		OutOfRotation: []workflows.HostMarks{{Host: "web2", Marks: []string{"maintenance", "drained"}}}}
	step := &workflows.StepError{Host: "web2", Step: "check_version", Detail: "no response within 30s"}
	for _, tc := range []struct {
		name  string
		recap *workflows.Recap
		err   error
		want  []string
	}{
		{"failed", recap, step, []string{"run 7f3a09c1 is recorded failed: 1 of 3 hosts done",
			"not finished: web2 (failed, left maintenance and drained)", "1 not started", "signet ping -I web2",
			"signet deploy --resume 7f3a09c1"}},
		{"stopped", &workflows.Recap{Run: "7f3a09c1", Status: workflows.StatusStopped, Hosts: recap.Hosts[:1]},
			fmt.Errorf("%w before batch 2 of 2", workflows.ErrStopped), []string{"recorded stopped", "Finish the run with: signet deploy --resume 7f3a09c1"}},
		{"state not saved", recap, fmt.Errorf("%w; %w", step, &workflows.SaveError{Run: "7f3a09c1", Status: "failed", Err: errors.New("timeout")}),
			[]string{"the broker did not take the run's last state"}},
		{"no run", nil, errors.New("discover: no registry"), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := g.haltExit("signet deploy --resume", tc.recap, tc.err)
			if !errors.Is(err, tc.err) {
				t.Fatalf("haltExit lost the error: %v", err)
			}
			var he *hintError
			if tc.want == nil {
				if errors.As(err, &he) {
					t.Fatalf("hint for a run that never started: %s", he.hint)
				}
				return
			}
			if !errors.As(err, &he) {
				t.Fatalf("no hint: %v", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(he.hint, w) {
					t.Errorf("hint %q does not say %q", he.hint, w)
				}
			}
		})
	}
}
