package releasetest

import (
	"os"
	"path/filepath"
	"testing"
)

// WriteSecret writes value and a newline to a 0600 file called name in a
// new temporary directory, as an operator would store a token, and returns
// its path.
func WriteSecret(t testing.TB, name, value string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(value+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
