package bus

import "testing"

// TestIdentityGrammarIsKnownHosts: an identity the responder starts with
// must be one a client's known_hosts can list (internal/grammar), so
// neither a leading "-" nor "_" passes here and fails there.
func TestIdentityGrammarIsKnownHosts(t *testing.T) {
	for _, id := range []string{"-web1", "_web1", ".web1", "web 1"} {
		if CheckIdentity(id) == nil {
			t.Errorf("identity %q accepted", id)
		}
	}
	for _, id := range []string{"web1", "web1.example.com", "db_2", "a-b"} {
		if err := CheckIdentity(id); err != nil {
			t.Errorf("identity %q: %v", id, err)
		}
	}
	if CheckName("agent", "db-restore") == nil {
		t.Error("agent db-restore accepted")
	}
}
