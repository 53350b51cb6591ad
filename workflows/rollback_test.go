package workflows

import (
	"errors"
	"strings"
	"testing"

	"github.com/signetbus/signet/bus"
)

// TestStateProvenanceValidated: a run state's ticket, build URL and
// digests are checked like a request's provenance when it is loaded, so a
// broker user cannot smuggle a control character or a bogus digest into
// the requests a resume signs (the signature check comes first; this is
// the second line).
func TestStateProvenanceValidated(t *testing.T) {
	good := strings.Repeat("a", 64)
	cases := []struct {
		name string
		set  func(st *RunState)
		ok   bool
	}{
		{"valid", func(st *RunState) {
			st.Ticket, st.BuildURL, st.Digests = "CHG-1", "https://ci.example.com/job/1/", map[string]string{"1.4.2": good}
		}, true},
		{"digest not hex", func(st *RunState) { st.Digests = map[string]string{"1.4.2": strings.Repeat("z", 64)} }, false},
		{"digest uppercase", func(st *RunState) { st.Digests = map[string]string{"1.4.2": strings.ToUpper(good)} }, false},
		{"digest bad version", func(st *RunState) { st.Digests = map[string]string{"1.4 2": good} }, false},
		{"ticket control character", func(st *RunState) { st.Ticket = "CHG-1\n" }, false},
		{"build url scheme", func(st *RunState) { st.BuildURL = "file:///etc/passwd" }, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st := NewRunState("deploy", [][]string{{"web1"}}, map[string]string{"version": "1.4.2"})
			st.Version = "1.4.2"
			c.set(st)
			err := st.Validate()
			if c.ok != (err == nil) || !c.ok && !errors.Is(err, ErrStateInvalid) {
				t.Errorf("Validate() = %v, want ok=%v", err, c.ok)
			}
		})
	}
}

// TestRollbackVars: during a rollback {{version}} is the previous
// version, {{target_version}} the failed one, and previous_NAME replaces
// NAME.
func TestRollbackVars(t *testing.T) {
	v := map[string]string{"version": "1.1", "previous": "1.0", "sha256": "new", "previous_sha256": "old", "identity": "web1"}
	rollbackVars(v)
	want := map[string]string{"version": "1.0", "previous": "1.0", "target_version": "1.1", "sha256": "old", "previous_sha256": "old", "identity": "web1"}
	for k, w := range want {
		if v[k] != w {
			t.Errorf("%s = %q, want %q", k, v[k], w)
		}
	}
}

// TestReasonText: whatever a plugin's error holds, the rollback's reason
// passes the hosts' provenance check; otherwise every rollback request
// would be refused as malformed.
func TestReasonText(t *testing.T) {
	for _, in := range []string{
		"web3: update: dpkg: error processing archive\n  new pre-installation script returned 1\r\x1b[31m",
		"bad \xff utf-8",
		strings.Repeat("é", 800), // a cut inside a rune
		"health: GET https://user:hunter2@app.example.com/health: 500",
	} {
		out := reasonText("rollback of run 7f3a after " + in)
		if err := (&bus.Provenance{Run: "7f3a", Reason: out}).Check(); err != nil {
			t.Errorf("reasonText(%.40q) = %.60q: %v", in, out, err)
		}
		if strings.Contains(out, "hunter2") {
			t.Errorf("reasonText kept a credential: %q", out)
		}
	}
}
