package audit

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestOpenTightensLooseMode: an audit log left readable by others (an
// older install, a careless copy) is made 0600 when signetd opens it.
func TestOpenTightensLooseMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	if err := os.WriteFile(path, []byte("{}\n"), 0o666); err != nil {
		t.Fatal(err)
	}
	os.Chmod(path, 0o666)
	l, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v after Open, want 0600", st.Mode().Perm())
	}
}

// TestOpenRefusesUnsafePlaces: a directory anyone can write to lets
// anyone plant or swap the log, and a symbolic link sends the records
// elsewhere.
func TestOpenRefusesUnsafePlaces(t *testing.T) {
	open := t.TempDir()
	os.Chmod(open, 0o777)
	if _, err := Open(filepath.Join(open, "audit.jsonl")); err == nil || !strings.Contains(err.Error(), "writable") {
		t.Fatalf("world-writable directory: err %v", err)
	}
	dir := t.TempDir()
	target := filepath.Join(dir, "elsewhere")
	os.WriteFile(target, nil, 0o600)
	link := filepath.Join(dir, "audit.jsonl")
	os.Symlink(target, link)
	if _, err := Open(link); err == nil {
		t.Fatal("opened an audit log through a symbolic link")
	}
}
