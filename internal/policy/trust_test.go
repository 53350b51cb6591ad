package policy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLoadRefusesLoose: whoever can write the policy (or its directory)
// can grant themselves any action, so a loose policy file is refused.
func TestLoadRefusesLoose(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the owner case chowns a file to another user and needs root (CI runs as root)")
	}
	tests := []struct {
		name  string
		setup func(t *testing.T, p string) string
		want  []string
	}{
		{name: "group-writable", setup: func(t *testing.T, p string) string { chmod(t, p, 0o664); return p },
			want: []string{"policy: ", " has mode 0664", "hint: chmod 644 "}},
		{name: "world-writable", setup: func(t *testing.T, p string) string { chmod(t, p, 0o666); return p },
			want: []string{"has mode 0666"}},
		{name: "owned by another user", setup: func(t *testing.T, p string) string {
			if err := os.Chown(p, 65534, 65534); err != nil {
				t.Fatal(err)
			}
			return p
		}, want: []string{"owned by uid 65534", "hint: chown root "}},
		{name: "symlink to a loose file", setup: func(t *testing.T, p string) string {
			chmod(t, p, 0o646)
			link := p + ".link"
			if err := os.Symlink(p, link); err != nil {
				t.Fatal(err)
			}
			return link
		}, want: []string{"(the target of ", "has mode 0646"}},
		{name: "world-writable directory", setup: func(t *testing.T, p string) string {
			chmod(t, filepath.Dir(p), 0o777)
			return p
		}, want: []string{"has mode 0777: a directory"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "etc")
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(dir, "policy.yaml")
			if err := os.WriteFile(p, []byte(sitePolicy), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := Load(tc.setup(t, p))
			if err == nil {
				t.Fatal("loaded a policy others can write")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q: want %q in it", err, w)
				}
			}
		})
	}
}

func chmod(t *testing.T, p string, m os.FileMode) {
	t.Helper()
	if err := os.Chmod(p, m); err != nil {
		t.Fatal(err)
	}
}
