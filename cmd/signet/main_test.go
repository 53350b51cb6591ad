package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNoTestHooks: the operator CLI links the demo (signet demo), but no
// test support: nothing a test binary obeys is in signet.
func TestNoTestHooks(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("the go command is not in PATH: cannot list the binary's dependencies")
	}
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		if dep == "testing" || strings.HasSuffix(dep, "test") && strings.HasPrefix(dep, "github.com/signetbus/signet/") {
			t.Errorf("signet links %s", dep)
		}
	}
}
