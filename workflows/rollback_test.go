package workflows

import (
	"errors"
	"strings"
	"testing"
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
