package packages

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/signetbus/signet/internal/command"
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

// dnfArtifactRunner plays dnf and rpm for the digest path: rpm -q answers
// from the fixtures (installed before, then after), dnf download writes
// content as the .rpm into --destdir, rpm -qp names the file's package,
// and dnf install of the file is recorded.
type dnfArtifactRunner struct {
	t         *testing.T
	content   []byte
	installed []string // the rpm -q fixtures, in order
	ran       []string
}

func (r *dnfArtifactRunner) run(_ context.Context, spec command.Spec) (*command.Result, error) {
	argv := spec.Argv
	res := &command.Result{Argv: argv}
	r.ran = append(r.ran, strings.Join(argv, " "))
	switch {
	case argv[0] == "rpm" && argv[1] == "-q":
		res.Stdout = fixture(r.t, r.installed[0])
		if len(r.installed) > 1 {
			r.installed = r.installed[1:]
		}
	case argv[0] == "dnf" && slices.Contains(argv, "download"):
		for _, a := range argv {
			if dir, ok := strings.CutPrefix(a, "--destdir="); ok {
				if err := os.WriteFile(filepath.Join(dir, "tinyapp-1.1-1.el9.noarch.rpm"), r.content, 0o644); err != nil {
					r.t.Fatal(err)
				}
			}
		}
	case argv[0] == "rpm" && argv[1] == "-qp":
		res.Stdout = "tinyapp\t0\t1.1\t1.el9\n"
	case argv[0] == "dnf" && slices.Contains(argv, "install"):
	case argv[0] == "dnf" && slices.Contains(argv, "versionlock"): // no locks
	default:
		r.t.Errorf("unexpected command %q", argv)
	}
	return res, nil
}

// TestDnfDigest: the dnf backend downloads the .rpm, refuses a digest
// mismatch without running dnf install, and installs the downloaded file
// itself (dnf install -- /path/file.rpm) when it matches.
func TestDnfDigest(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	content := []byte("not really an rpm")
	sum := sha256.Sum256(content)
	right := hex.EncodeToString(sum[:])

	r := &dnfArtifactRunner{t: t, content: content, installed: []string{"rpm-q-1.0.txt"}}
	p, err := newPackage([]byte(`{"backend":"dnf"}`), r.run, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = runAction(t, p, "update", map[string]any{"package": "tinyapp", "version": "1.1", "sha256": strings.Repeat("0", 64)})
	var de *DigestError
	if !errors.As(err, &de) || de.Got != right || de.File != "tinyapp-1.1-1.el9.noarch.rpm" {
		t.Fatalf("wrong digest: %v", err)
	}
	for _, c := range r.ran {
		if strings.Contains(c, " install ") {
			t.Errorf("dnf install ran despite the mismatch: %s", c)
		}
	}

	r = &dnfArtifactRunner{t: t, content: content, installed: []string{"rpm-q-1.0.txt", "rpm-q-1.1.txt"}}
	if p, err = newPackage([]byte(`{"backend":"dnf"}`), r.run, nil); err != nil {
		t.Fatal(err)
	}
	res, err := runAction(t, p, "update", map[string]any{"package": "tinyapp", "version": "1.1", "sha256": right})
	if err != nil {
		t.Fatalf("right digest: %v (ran %q)", err, r.ran)
	}
	installed := false
	for _, c := range r.ran {
		if strings.HasPrefix(c, "dnf -y install -- /") && strings.HasSuffix(c, "/tinyapp-1.1-1.el9.noarch.rpm") {
			installed = true
		}
	}
	if !installed || res.Data["sha256"] != right {
		t.Errorf("the downloaded file was not installed: ran %q, result %+v", r.ran, res)
	}
}
