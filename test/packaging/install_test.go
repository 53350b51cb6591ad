package packaging

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// installInRoot installs the signetd .deb with dpkg into a throwaway root,
// which runs its maintainer scripts chrooted there: the postinst must
// create the host key, an upgrade must keep it and the admin's config, and
// a purge must remove the key and the conffiles but keep the audit log.
func installInRoot(t *testing.T, deb string) {
	need(t, "dpkg", "chroot", "ldd")
	if os.Geteuid() != 0 {
		t.Skip("skipped: dpkg runs the maintainer scripts chrooted into the throwaway root, which needs root (CI runs as root)")
	}
	root := scriptRoot(t)
	for _, d := range []string{"var/lib/dpkg/info", "var/lib/dpkg/updates"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "var/lib/dpkg/status"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	dpkg := func(args ...string) string { return run(t, "dpkg", append([]string{"--root=" + root}, args...)...) }
	key := filepath.Join(root, "etc/signet/host_key")

	out := dpkg("-i", deb)
	first, err := os.ReadFile(key)
	if err != nil {
		t.Fatalf("the postinst made no host key: %v\ndpkg said:\n%s", err, out)
	}
	if fi, _ := os.Stat(key); fi.Mode().Perm() != 0o600 {
		t.Errorf("host key mode %v, want 0600", fi.Mode().Perm())
	}
	pub, err := os.ReadFile(key + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	// The postinst prints the known_hosts line for the operators.
	if f := strings.Fields(string(pub)); len(f) < 2 || !strings.Contains(out, f[0]+" "+f[1]) {
		t.Errorf("dpkg output does not show the new host key %q:\n%s", pub, out)
	}
	// The default config, policy and trust files pass signetd's own
	// checks, run as the unit runs them before every start.
	pre := unitLine(t, filepath.Join(root, "usr/lib/systemd/system/signetd.service"), "ExecStartPre")
	if b, err := exec.Command("chroot", append([]string{root}, pre...)...).CombinedOutput(); err != nil {
		t.Errorf("the unit's ExecStartPre %v on the packaged defaults: %v\n%s", pre, err, b)
	}

	// An upgrade (here a reinstall: dpkg runs "postinst configure OLD")
	// keeps the host key and the admin's edits to a conffile.
	conf := filepath.Join(root, "etc/signet/signetd.yaml")
	edited := append(readFile(t, conf), []byte("classes: [web]\n")...)
	if err := os.WriteFile(conf, edited, 0o640); err != nil {
		t.Fatal(err)
	}
	dpkg("-i", deb)
	if !bytes.Equal(readFile(t, key), first) {
		t.Error("the upgrade replaced the host key")
	}
	if !bytes.Equal(readFile(t, conf), edited) {
		t.Error("the upgrade overwrote the edited /etc/signet/signetd.yaml")
	}

	// A purge removes the key and the conffiles, and keeps the audit log.
	audit := filepath.Join(root, "var/log/signet/audit.jsonl")
	if err := os.WriteFile(audit, []byte("{}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dpkg("--purge", "signetd")
	for _, gone := range []string{key, key + ".pub", conf, filepath.Join(root, "usr/bin/signetd")} {
		if _, err := os.Stat(gone); !os.IsNotExist(err) {
			t.Errorf("after purge %s is still there (%v)", gone, err)
		}
	}
	if _, err := os.Stat(audit); err != nil {
		t.Errorf("purge removed the audit log: %v", err)
	}
}

// scriptRoot is a throwaway root in which maintainer scripts can run:
// a shell, rm and rmdir, with their libraries.
func scriptRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	for _, prog := range []string{"/bin/sh", "/bin/rm", "/bin/rmdir"} {
		copyInto(t, root, prog)
		for _, lib := range regexp.MustCompile(`/\S+`).FindAllString(run(t, "ldd", prog), -1) {
			copyInto(t, root, lib)
		}
	}
	return root
}

// installRPMInRoot installs the signetd .rpm with rpm --root: its %post
// must create the host key, and an upgrade (%post with 2) must keep the
// key and the admin's config.
func installRPMInRoot(t *testing.T, pkg string) {
	need(t, "chroot", "ldd")
	if os.Geteuid() != 0 {
		t.Skip("skipped: rpm runs the scriptlets chrooted into the throwaway root, which needs root (CI runs as root)")
	}
	root := scriptRoot(t)
	run(t, "rpm", "--root", root, "--initdb")
	// --nodeps: the throwaway root has no package database of the shell.
	out := run(t, "rpm", "--root", root, "-i", "--nodeps", pkg)
	key := filepath.Join(root, "etc/signet/host_key")
	first, err := os.ReadFile(key)
	if err != nil {
		t.Fatalf("%%post made no host key: %v\nrpm said:\n%s", err, out)
	}
	conf := filepath.Join(root, "etc/signet/signetd.yaml")
	edited := append(readFile(t, conf), []byte("classes: [web]\n")...)
	if err := os.WriteFile(conf, edited, 0o640); err != nil {
		t.Fatal(err)
	}
	run(t, "rpm", "--root", root, "-U", "--replacepkgs", "--nodeps", pkg)
	if !bytes.Equal(readFile(t, key), first) {
		t.Error("the upgrade replaced the host key")
	}
	if !bytes.Equal(readFile(t, conf), edited) {
		t.Error("the upgrade overwrote the edited /etc/signet/signetd.yaml")
	}
}

// copyInto copies the file at path (following links) to the same path
// under root.
func copyInto(t *testing.T, root, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(root, path)
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o755); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
