package signetd

import (
	"bytes"
	"context"
	"testing"

	"github.com/signetbus/signet/internal/version"
)

// signetd --version names the build's version, its commit and the
// protocol version it speaks, and does not read a config.
func TestVersionFlag(t *testing.T) {
	defer func(v, c string) { version.Version, version.Commit = v, c }(version.Version, version.Commit)
	version.Version, version.Commit = "9.8.7", "cafe123"
	var out, errb bytes.Buffer
	code := Main(context.Background(), []string{"--version", "--config", "/nonexistent/signetd.yaml"}, IO{Out: &out, Err: &errb, Getenv: func(string) string { return "" }})
	if code != ExitOK {
		t.Fatalf("exit %d, stderr %s", code, errb.String())
	}
	if got, want := out.String(), version.String("signetd")+"\n"; got != want {
		t.Errorf("signetd --version printed %q, want %q", got, want)
	}
}
