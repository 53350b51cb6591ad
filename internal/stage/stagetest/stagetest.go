// Package stagetest lets a test binary start a stage with real runit: it
// makes the test binary itself the demo app. Import it only from _test.go
// files; cmd/signet and cmd/signetd never link it (their tests check).
package stagetest

import (
	"os"
	"testing"

	"github.com/signetbus/signet/internal/stage"
)

// A test binary started by the stage's run script as
// `TESTBINARY demo app PATH` runs the demo app instead of its tests. Only
// test binaries obey it.
func init() {
	if testing.Testing() && len(os.Args) == 4 && os.Args[1] == "demo" && os.Args[2] == "app" {
		os.Exit(stage.AppMain(os.Args[3]))
	}
}

// AppCommand is stage.Options.AppCommand for a test binary that imports
// this package: the binary itself with "demo app", the same words as
// `signet demo app`.
func AppCommand() []string {
	exe, err := os.Executable()
	if err != nil {
		return nil // the stage then sandboxes the service and says why
	}
	return []string{exe, "demo", "app"}
}
