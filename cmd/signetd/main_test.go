package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestNoDemoOrTestCode: the production daemon links no demo, lab, test
// fleet or client code, so nothing (no environment variable, no hidden
// command) can turn signetd into something else.
func TestNoDemoOrTestCode(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("the go command is not in PATH: cannot list the binary's dependencies")
	}
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	forbidden := []string{
		"github.com/signetbus/signet/internal/stage",
		"github.com/signetbus/signet/internal/lab",
		"github.com/signetbus/signet/internal/broker",
		"github.com/signetbus/signet/internal/cli",
		"github.com/signetbus/signet/workflows",
		"github.com/nats-io/nats-server/v2/server",
		"testing",
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, f := range forbidden {
			if dep == f || strings.HasPrefix(dep, f+"/") {
				t.Errorf("signetd links %s", dep)
			}
		}
	}
}

// TestStageAppVariableDoesNothing: the variable that once turned signetd
// into the demo web app is now just an environment variable.
func TestStageAppVariableDoesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("builds signetd")
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("the go command is not in PATH: cannot build signetd")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "signetd")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	app := filepath.Join(dir, "app.json")
	if err := os.WriteFile(app, []byte(`{"identity":"web1","listen":"127.0.0.1:0"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--version")
	cmd.Env = append(os.Environ(), "SIGNET_STAGE_APP="+app)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "signetd ") || !strings.Contains(string(out), "(commit ") {
		t.Fatalf("signetd --version with SIGNET_STAGE_APP set: %v, %q; want signetd's version", err, out)
	}
}
