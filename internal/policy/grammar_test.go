package policy

import (
	"strings"
	"testing"
)

// TestRuleNamesFollowTheAgentGrammar: a rule can only name agents and
// actions a host can have; db-restore.run used to parse and then never
// match, hiding a typo for an allow that never applied.
func TestRuleNamesFollowTheAgentGrammar(t *testing.T) {
	for _, allow := range []string{"db-restore.run", "db_restore.full-run", "Package.update"} {
		_, err := Parse([]byte("rules:\n  - roles: [ops]\n    allow: [\"" + allow + "\"]\n"))
		if err == nil || !strings.Contains(err.Error(), "lowercase letters, digits and _") {
			t.Errorf("allow %s: %v, want the name grammar", allow, err)
		}
	}
	if _, err := Parse([]byte("rules:\n  - roles: [ops]\n    allow: [\"db_restore.run\", \"package.*\"]\n")); err != nil {
		t.Fatal(err)
	}
}
