package release

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// The two-person rule's hook runs once, after the operator confirmed and
// before anything is posted or deployed, with the whole manifest; when it
// fails nothing is posted or deployed, and when it passes the release
// runs every app.
func TestRunApproveHook(t *testing.T) {
	f := newFixture(t, threeApps)
	notApproved := errors.New("approval expired")
	var seen []string
	f.opts.Approve = func(_ context.Context, m *Manifest) error {
		if c := f.deploy.Calls(); len(c) != 0 {
			t.Errorf("deployer called before approval: %q", c)
		}
		if !strings.Contains(f.out.String(), "type yes to deploy") {
			t.Errorf("approval asked before the confirmation:\n%s", f.out.String())
		}
		for _, it := range m.Items {
			seen = append(seen, it.App+" "+it.Version)
		}
		return notApproved
	}
	err := Run(context.Background(), f.opts)
	if !errors.Is(err, notApproved) || !strings.Contains(err.Error(), "nothing was deployed or posted") {
		t.Fatalf("error %v, want the hook's", err)
	}
	if strings.Join(seen, ",") != "web 1.0,api 2.0,db 3.0" {
		t.Errorf("hook saw %q, want the manifest in order", seen)
	}
	if c := f.deploy.Calls(); len(c) != 0 {
		t.Errorf("deployer called: %q", c)
	}
	if n := len(f.chat.Texts()) + len(f.jira.Comments()) + len(f.jira.Transitions()) + len(f.mail.Messages()); n != 0 {
		t.Errorf("%d things posted, want none", n)
	}

	f = newFixture(t, threeApps)
	calls := 0
	f.opts.Approve = func(context.Context, *Manifest) error { calls++; return nil }
	if err := Run(context.Background(), f.opts); err != nil {
		t.Fatal(err)
	}
	if calls != 1 || len(f.deploy.Calls()) != 4 {
		t.Errorf("hook called %d times, deployer %q: want once, then refresh and three deploys", calls, f.deploy.Calls())
	}
}
