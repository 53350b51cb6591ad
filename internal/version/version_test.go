package version

import (
	"fmt"
	"testing"

	"github.com/signetbus/signet/bus"
)

func TestString(t *testing.T) {
	defer func(v, c string) { Version, Commit = v, c }(Version, Commit)
	Version, Commit = "1.2.3", "0123abc"
	want := fmt.Sprintf("signetd 1.2.3 (commit 0123abc, protocol %d)", bus.ProtocolVersion)
	if got := String("signetd"); got != want {
		t.Errorf("String = %q, want %q", got, want)
	}
}
