package keys

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLoadTrustFilesRefuseLoose: whoever can write authorized_keys or the
// host key (or the directory holding them) owns the host, so loose files
// are refused with the file, its mode and a fix, not loaded.
func TestLoadTrustFilesRefuseLoose(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the owner cases chown files to another user and need root (CI runs as root)")
	}
	good := `roles="admin",name="alice" ` + keyA + "\n"
	t.Run("authorized_keys group-writable", func(t *testing.T) {
		p := writeMode(t, t.TempDir(), "authorized_keys", good, 0o664)
		_, err := LoadAuthorizedKeys(p)
		wantErr(t, err, "authorized keys: "+p+" has mode 0664", "hint: chmod 644 "+p)
	})
	t.Run("authorized_keys world-writable", func(t *testing.T) {
		p := writeMode(t, t.TempDir(), "authorized_keys", good, 0o646)
		_, err := LoadAuthorizedKeys(p)
		wantErr(t, err, "has mode 0646")
	})
	t.Run("authorized_keys owned by another user", func(t *testing.T) {
		p := writeMode(t, t.TempDir(), "authorized_keys", good, 0o644)
		if err := os.Chown(p, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		_, err := LoadAuthorizedKeys(p)
		wantErr(t, err, "is owned by uid 65534", "hint: chown root "+p)
	})
	t.Run("authorized_keys via a symlink to a loose file", func(t *testing.T) {
		dir := t.TempDir()
		target := writeMode(t, dir, "real", good, 0o666)
		link := filepath.Join(dir, "authorized_keys")
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
		_, err := LoadAuthorizedKeys(link)
		wantErr(t, err, "has mode 0666")
	})
	t.Run("authorized_keys in a world-writable directory", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "etc")
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(dir, 0o777); err != nil {
			t.Fatal(err)
		}
		p := writeMode(t, dir, "authorized_keys", good, 0o644)
		_, err := LoadAuthorizedKeys(p)
		wantErr(t, err, dir+" has mode 0777", "chmod go-w "+dir)
	})
	t.Run("authorized_keys 0644 loads", func(t *testing.T) {
		p := writeMode(t, t.TempDir(), "authorized_keys", good, 0o644)
		if _, err := LoadAuthorizedKeys(p); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("host key in a group-writable directory", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "etc")
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, "host_key")
		if _, err := LoadHostKey(p); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(dir, 0o775); err != nil {
			t.Fatal(err)
		}
		_, err := LoadHostKey(p)
		wantErr(t, err, dir+" has mode 0775")
	})
	t.Run("host key owned by another user", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "host_key")
		if _, err := LoadHostKey(p); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		_, err := LoadHostKey(p)
		wantErr(t, err, "is owned by uid 65534")
	})
}

func writeMode(t *testing.T, dir, name, content string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func wantErr(t *testing.T, err error, want ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("loaded; want an error with %q", want)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q: want %q in it", err, w)
		}
	}
}
