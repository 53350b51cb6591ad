package broker

import (
	"os"
	"testing"
	"time"
)

// TestClusterAuthFiles: the key and the secret are private, a second run
// keeps the set (every node holds a copy), and a secret too short to be
// one is refused.
func TestClusterAuthFiles(t *testing.T) {
	dir := t.TempDir()
	f, err := GenerateClusterAuth(dir, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]os.FileMode{f.Key: 0o600, f.Secret: 0o600, f.CA: 0o644, f.Cert: 0o644} {
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != want {
			t.Errorf("%s: mode %o, want %o", path, st.Mode().Perm(), want)
		}
	}
	a, err := LoadClusterAuth(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := GenerateClusterAuth(dir, time.Hour); err != nil {
		t.Fatal(err)
	}
	b, err := LoadClusterAuth(dir)
	if err != nil || b.Secret != a.Secret {
		t.Fatalf("a second run changed the set: %v", err)
	}
	if err := os.WriteFile(f.Secret, []byte("short\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadClusterAuth(dir); err == nil {
		t.Fatal("a 5-character secret was accepted")
	}
}
