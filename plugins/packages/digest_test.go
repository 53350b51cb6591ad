package packages

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// debSHA256 is the digest of a .deb the test root's repository holds.
func (r *aptRoot) debSHA256(t *testing.T, name, version string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(r.repo, fmt.Sprintf("%s_%s_all.deb", name, version)))
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// dpkgStatus is what `dpkg -s` says of the package in the test root.
func (r *aptRoot) dpkgStatus(t *testing.T, name string) string {
	t.Helper()
	out, _ := exec.Command("dpkg", "--admindir="+filepath.Join(r.dir, "var/lib/dpkg"), "-s", "--", name).CombinedOutput()
	for _, line := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(line, "Version: "); ok {
			return v
		}
	}
	return "not installed: " + strings.TrimSpace(string(out))
}

// TestAptDigest drives real apt-get and dpkg with real dpkg-deb-built
// packages: an update whose sha256 does not match the .deb is refused
// before dpkg runs (the new version's preinst never ran, dpkg -s still
// shows the old version) with an error naming both digests; the right
// digest installs that very file.
func TestAptDigest(t *testing.T) {
	r := newAptRoot(t)
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp) // where the plugin fetches the artifacts
	// The preinst leaves a trace in the root: it proves whether dpkg ran.
	const trace = `#!/bin/sh
touch "${DPKG_ROOT}/preinst-ran-$DPKG_MAINTSCRIPT_PACKAGE-1.1"
exit 0
`
	r.addDeb(t, "sigdemo", "1.0", "")
	r.addDeb(t, "sigdemo", "1.1", trace)
	mustDo(t, r, "refresh", nil)
	mustDo(t, r, "install", map[string]any{"package": "sigdemo", "version": "1.0"})
	ran := filepath.Join(r.dir, "preinst-ran-sigdemo-1.1")

	right := r.debSHA256(t, "sigdemo", "1.1")
	wrong := strings.Repeat("0", 64)
	_, err := r.do(t, "update", map[string]any{"package": "sigdemo", "version": "1.1", "sha256": wrong})
	var de *DigestError
	if !errors.As(err, &de) {
		t.Fatalf("update with a wrong digest: %v, want a *DigestError", err)
	}
	for _, want := range []string{"sigdemo_1.1_all.deb", "has sha256 " + right, "expected " + wrong, "refused before installing"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if got := r.dpkgStatus(t, "sigdemo"); got != "1.0" {
		t.Errorf("dpkg -s after the refused update: %s, want 1.0", got)
	}
	if got := r.installedFile(t, "sigdemo"); got != "1.0" {
		t.Errorf("installed file after the refused update: %s, want 1.0", got)
	}
	if _, err := os.Stat(ran); err == nil {
		t.Error("the 1.1 preinst ran: dpkg was run despite the digest mismatch")
	}
	left, _ := filepath.Glob(filepath.Join(tmp, "signet-package-*"))
	if len(left) > 0 {
		t.Errorf("artifact directories left behind: %v", left)
	}

	// A digest that is not 64 lowercase hex digits never reaches Run.
	if _, err := r.do(t, "update", map[string]any{"package": "sigdemo", "version": "1.1", "sha256": strings.ToUpper(right)}); err == nil {
		t.Error("an uppercase digest was accepted")
	}

	res, err := r.do(t, "update", map[string]any{"package": "sigdemo", "version": "1.1", "sha256": right})
	if err != nil {
		t.Fatalf("update with the right digest: %v", err)
	}
	if res.Data["sha256"] != right || !strings.Contains(res.Summary, "sha256 verified") || res.Data["previous"] != "1.0" {
		t.Errorf("result = %+v", res)
	}
	if got := r.dpkgStatus(t, "sigdemo"); got != "1.1" {
		t.Errorf("dpkg -s after the verified update: %s, want 1.1", got)
	}
	if _, err := os.Stat(ran); err != nil {
		t.Errorf("the 1.1 preinst did not run: %v", err)
	}
	// And back down, verified too.
	if _, err := r.do(t, "update", map[string]any{"package": "sigdemo", "version": "1.0", "sha256": r.debSHA256(t, "sigdemo", "1.0")}); err != nil {
		t.Fatalf("downgrade with the right digest: %v", err)
	}
	if got := r.installedFile(t, "sigdemo"); got != "1.0" {
		t.Errorf("installed file after the verified downgrade: %s, want 1.0", got)
	}
	if hostHas("sigdemo") {
		t.Fatal("the machine's own dpkg database knows sigdemo: the test escaped its root")
	}
}
