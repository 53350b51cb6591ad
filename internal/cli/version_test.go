package cli

import (
	"bytes"
	"context"
	"testing"

	"github.com/signetbus/signet/internal/version"
)

// signet --version names the build's version, its commit and the protocol
// version it speaks, set by the packaging command through internal/version.
func TestVersionFlag(t *testing.T) {
	defer func(v, c string) { version.Version, version.Commit = v, c }(version.Version, version.Commit)
	version.Version, version.Commit = "9.8.7", "cafe123"
	var out, errb bytes.Buffer
	code := Main(context.Background(), []string{"--version"}, IO{Out: &out, Err: &errb, Getenv: func(string) string { return "" }})
	if code != ExitOK {
		t.Fatalf("exit %d, stderr %s", code, errb.String())
	}
	if got, want := out.String(), version.String("signet")+"\n"; got != want {
		t.Errorf("signet --version printed %q, want %q", got, want)
	}
}
