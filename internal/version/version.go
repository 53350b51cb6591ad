// Package version holds the build's version and commit, set by the
// packaging command (go run ./packaging) with -ldflags:
//
//	-X github.com/signetbus/signet/internal/version.Version=1.2.3
//	-X github.com/signetbus/signet/internal/version.Commit=0123abc
//
// Both signet and signetd print them with --version, beside the protocol
// version they speak, so an operator can tell which builds can talk to
// each other. It sits below both commands: signetd must not link the
// client's package to learn its own version.
package version

import (
	"fmt"

	"github.com/signetbus/signet/bus"
)

// Version is the release version; "0.1.0-dev" in a build without
// -ldflags.
var Version = "0.1.0-dev"

// Commit is the source commit; "unknown" in a build without -ldflags.
var Commit = "unknown"

// String is the --version line of program, for example
// "signetd 1.2.3 (commit 0123abc, protocol 1)".
func String(program string) string {
	return fmt.Sprintf("%s %s (commit %s, protocol %d)", program, Version, Commit, bus.ProtocolVersion)
}
