package agents

import (
	"os"
	"strings"
	"testing"

	"github.com/signetbus/signet/bus"
)

// TestReloadRefusesLooseTrustFiles: a SIGHUP reload after someone made
// authorized_keys or the policy writable by others is refused, and the
// host keeps the trust and policy it had.
func TestReloadRefusesLooseTrustFiles(t *testing.T) {
	f := newFixture(t, "deploy", "rules:\n  - roles: [deploy]\n    allow: [\"slow.*\"]\n")
	for _, p := range []string{f.cfg.AuthorizedKeys, f.cfg.Policy} {
		if err := os.Chmod(p, 0o666); err != nil {
			t.Fatal(err)
		}
		err := f.host.Reload()
		if err == nil || !strings.Contains(err.Error(), p+" has mode 0666") {
			t.Fatalf("reload with %s 0666: %v", p, err)
		}
		if rep := f.call(t, "fail", nil); rep.Code != bus.CodeFailed {
			t.Fatalf("a refused reload changed trust or policy: %+v", rep)
		}
		if err := os.Chmod(p, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.host.Reload(); err != nil {
		t.Fatal(err)
	}
}
