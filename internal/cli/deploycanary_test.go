package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/signetbus/signet/workflows"
)

// TestDeployDecisionFlags: --promote and --abort are checked before
// anything is connected: one at a time, and not with --resume.
func TestDeployDecisionFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"deploy", "--promote", "7f3a09c1", "--abort", "7f3a09c1"}, "exclude each other"},
		{[]string{"deploy", "--promote", "7f3a09c1", "--resume", "7f3a09c1"}, "leave out --resume"},
	} {
		var out, errOut bytes.Buffer
		code := Main(context.Background(), tc.args, IO{In: strings.NewReader(""), Out: &out, Err: &errOut, Getenv: envMap(nil)})
		if code != ExitUsage || !strings.Contains(errOut.String(), tc.want) {
			t.Errorf("%v: want exit %d saying %q, found exit %d: %s", tc.args, ExitUsage, tc.want, code, errOut.String())
		}
	}
	var r rolloutFlags
	r.canary = "web1, web4,"
	if got := r.rollout().Canary; len(got) != 2 || got[0] != "web1" || got[1] != "web4" {
		t.Errorf("--canary web1, web4,: want [web1 web4], found %q", got)
	}
	r = rolloutFlags{abort: "7f3a09c1"}
	if d, ok, err := r.decision(); !ok || err != nil || d.Decision != workflows.DecisionAbort || d.Run != "7f3a09c1" {
		t.Errorf("--abort: found %+v %v %v", d, ok, err)
	}
}
