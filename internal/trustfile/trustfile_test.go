package trustfile

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheck refuses every way a file can be written by someone other than
// root or signetd's user, and accepts the usual layouts.
func TestCheck(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the cases chown files to another user and need root (CI runs as root)")
	}
	tests := []struct {
		name    string
		setup   func(t *testing.T, dir string) string // returns the path to check
		private bool
		want    []string // substrings of the error; nil means accepted
	}{
		{name: "0644 in a 0755 directory", setup: func(t *testing.T, dir string) string {
			return file(t, dir, "f", 0o644)
		}},
		{name: "0600 private", private: true, setup: func(t *testing.T, dir string) string {
			return file(t, dir, "f", 0o600)
		}},
		{name: "group-writable", setup: func(t *testing.T, dir string) string {
			return file(t, dir, "f", 0o664)
		}, want: []string{"/f has mode 0664: group or others can write it", "hint: chmod 644 "}},
		{name: "world-writable", setup: func(t *testing.T, dir string) string {
			return file(t, dir, "f", 0o646)
		}, want: []string{"has mode 0646", "chmod 644"}},
		{name: "private key readable by group", private: true, setup: func(t *testing.T, dir string) string {
			return file(t, dir, "f", 0o640)
		}, want: []string{"has mode 0640: group and others must not have access", "chmod 600"}},
		{name: "owned by another user", setup: func(t *testing.T, dir string) string {
			p := file(t, dir, "f", 0o644)
			must(t, os.Chown(p, 65534, 65534))
			return p
		}, want: []string{"is owned by uid 65534, neither root nor", "hint: chown root "}},
		{name: "symlink to a world-writable file", setup: func(t *testing.T, dir string) string {
			target := file(t, dir, "target", 0o666)
			link := filepath.Join(dir, "link")
			must(t, os.Symlink(target, link))
			return link
		}, want: []string{"/target (the target of ", "/link) has mode 0666"}},
		{name: "symlink to a good file", setup: func(t *testing.T, dir string) string {
			target := file(t, dir, "target", 0o644)
			link := filepath.Join(dir, "link")
			must(t, os.Symlink(target, link))
			return link
		}},
		{name: "in a world-writable directory", setup: func(t *testing.T, dir string) string {
			d := filepath.Join(dir, "open")
			must(t, os.Mkdir(d, 0o755))
			must(t, os.Chmod(d, 0o777))
			return file(t, d, "f", 0o644)
		}, want: []string{"/open has mode 0777: a directory group or others can write", "chmod go-w "}},
		{name: "in a group-writable directory above", setup: func(t *testing.T, dir string) string {
			d := filepath.Join(dir, "grp", "sub")
			must(t, os.MkdirAll(d, 0o755))
			must(t, os.Chmod(filepath.Dir(d), 0o775))
			return file(t, d, "f", 0o644)
		}, want: []string{"/grp has mode 0775"}},
		{name: "in a directory owned by another user", setup: func(t *testing.T, dir string) string {
			d := filepath.Join(dir, "nobody")
			must(t, os.Mkdir(d, 0o755))
			must(t, os.Chown(d, 65534, 65534))
			return file(t, d, "f", 0o644)
		}, want: []string{"/nobody is owned by uid 65534"}},
		{name: "in a sticky world-writable directory", setup: func(t *testing.T, dir string) string {
			d := filepath.Join(dir, "tmp")
			must(t, os.Mkdir(d, 0o755))
			must(t, os.Chmod(d, 0o777|os.ModeSticky))
			return file(t, d, "f", 0o644)
		}},
		{name: "via a symlink in a world-writable directory", setup: func(t *testing.T, dir string) string {
			target := file(t, dir, "target", 0o644)
			d := filepath.Join(dir, "open")
			must(t, os.Mkdir(d, 0o755))
			must(t, os.Chmod(d, 0o777))
			link := filepath.Join(d, "link")
			must(t, os.Symlink(target, link))
			return link
		}, want: []string{"/open has mode 0777"}},
		{name: "a directory", setup: func(t *testing.T, dir string) string {
			return dir
		}, want: []string{"is not a regular file"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "etc")
			must(t, os.Mkdir(dir, 0o755))
			p := tc.setup(t, dir)
			_, err := ReadFile(p, Options{What: "policy", Private: tc.private})
			if tc.want == nil {
				if err != nil {
					t.Fatalf("refused a safe file: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted %s", p)
			}
			if !errors.Is(err, ErrUnsafe) || !strings.HasPrefix(err.Error(), "policy: ") {
				t.Errorf("error %q: want policy: ... wrapping ErrUnsafe", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q: want %q in it", err, w)
				}
			}
		})
	}
}

// TestOwnUser trusts files owned by the user signetd runs as, not only
// root's.
func TestOwnUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown")
	}
	dir := t.TempDir()
	must(t, os.Chown(dir, 65534, 65534))
	p := file(t, dir, "f", 0o644)
	must(t, os.Chown(p, 65534, 65534))
	defer func(old int) { euid = old }(euid)
	euid = 65534
	if _, err := ReadFile(p, Options{What: "policy"}); err != nil {
		t.Fatalf("refused a file of signetd's own user: %v", err)
	}
}

func TestMissing(t *testing.T) {
	_, err := ReadFile(filepath.Join(t.TempDir(), "none"), Options{What: "policy"})
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("got %v, want a not-exist error", err)
	}
}

func TestTooLarge(t *testing.T) {
	p := filepath.Join(t.TempDir(), "big")
	must(t, os.WriteFile(p, make([]byte, 100), 0o644))
	if _, err := ReadFile(p, Options{What: "policy", MaxBytes: 99}); err == nil || !strings.Contains(err.Error(), "larger than 99 bytes") {
		t.Fatalf("got %v", err)
	}
}

func file(t *testing.T, dir, name string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	must(t, os.WriteFile(p, []byte("x\n"), 0o600))
	must(t, os.Chmod(p, mode))
	return p
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
