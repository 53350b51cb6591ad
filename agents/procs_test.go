package agents

import "testing"

func TestDaemonProcs(t *testing.T) {
	for env, want := range map[string]int{"": 1, "4": 0, "1": 0, "junk": 0} {
		if got := DaemonProcs(env); got != want {
			t.Errorf("DaemonProcs(%q) = %d, want %d", env, got, want)
		}
	}
}
