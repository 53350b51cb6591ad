package packages

import (
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/signetbus/signet/internal/command"
	"github.com/signetbus/signet/plugins"
)

// aptRoot is a throwaway Debian root: a dpkg database, an apt state and
// config tree, and a local flat repository of .deb files built in the
// test. The plugin reaches it only through its config (apt_config and
// dpkg_admindir), the way a host would configure it.
type aptRoot struct {
	dir, repo string
	debs      []string // Packages stanzas
	pkg       *Package
}

func newAptRoot(t *testing.T) *aptRoot {
	t.Helper()
	for _, tool := range []string{"dpkg", "dpkg-deb", "dpkg-query", "apt-get", "apt-cache", "apt-mark"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not found on PATH (install dpkg and apt): %v", tool, err)
		}
	}
	if os.Geteuid() != 0 {
		t.Skip("the apt/dpkg tests run as root: dpkg chowns unpacked files to root even under --root")
	}
	base := t.TempDir()
	r := &aptRoot{dir: filepath.Join(base, "root"), repo: filepath.Join(base, "repo")}
	for _, d := range []string{
		"etc/apt/apt.conf.d", "etc/apt/preferences.d", "etc/apt/sources.list.d",
		"var/lib/dpkg/info", "var/lib/dpkg/updates", "var/lib/apt/lists/partial",
		"var/cache/apt/archives/partial", "var/log/apt",
	} {
		mkdir(t, filepath.Join(r.dir, d))
	}
	mkdir(t, r.repo)
	writeFile(t, filepath.Join(r.dir, "var/lib/dpkg/status"), "")
	writeFile(t, filepath.Join(r.dir, "etc/apt/sources.list"), fmt.Sprintf("deb [trusted=yes] file:%s ./\n", r.repo))
	writeFile(t, filepath.Join(r.repo, "Packages"), "")
	conf := filepath.Join(base, "apt.conf")
	// Dir moves every apt path under the root, including apt.conf.d, so
	// the host's apt configuration is not read. dpkg gets --root, and runs
	// maintainer scripts without chroot (the root holds no /bin/sh).
	writeFile(t, conf, fmt.Sprintf(`Dir "%[1]s/";
Dir::State::status "%[1]s/var/lib/dpkg/status";
Dir::Bin::dpkg "/usr/bin/dpkg";
DPkg::Options { "--root=%[1]s"; "--force-script-chrootless"; };
APT::Sandbox::User "root";
`, r.dir))
	cfg, _ := json.Marshal(Config{Backend: "apt", AptConfig: conf, DpkgAdminDir: filepath.Join(r.dir, "var/lib/dpkg")})
	p, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	r.pkg = p.(*Package)
	return r
}

// addDeb builds name_version_all.deb with dpkg-deb, holding
// /opt/NAME/VERSION, and adds it to the repository index. A non-empty
// preinst becomes the package's preinst script.
func (r *aptRoot) addDeb(t *testing.T, name, version, preinst string) {
	t.Helper()
	src := filepath.Join(t.TempDir(), name+"-"+version)
	mkdir(t, filepath.Join(src, "DEBIAN"))
	mkdir(t, filepath.Join(src, "opt", name))
	control := fmt.Sprintf("Package: %s\nVersion: %s\nArchitecture: all\nMaintainer: signet tests <tests@example.invalid>\nDescription: signet test package\n", name, version)
	writeFile(t, filepath.Join(src, "DEBIAN/control"), control)
	writeFile(t, filepath.Join(src, "opt", name, "VERSION"), version+"\n")
	if preinst != "" {
		writeFile(t, filepath.Join(src, "DEBIAN/preinst"), preinst)
		if err := os.Chmod(filepath.Join(src, "DEBIAN/preinst"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	file := fmt.Sprintf("%s_%s_all.deb", name, version)
	if out, err := exec.Command("dpkg-deb", "--root-owner-group", "--build", src, filepath.Join(r.repo, file)).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb --build: %v\n%s", err, out)
	}
	b, err := os.ReadFile(filepath.Join(r.repo, file))
	if err != nil {
		t.Fatal(err)
	}
	md, sh := md5.Sum(b), sha256.Sum256(b)
	r.debs = append(r.debs, fmt.Sprintf("%sFilename: ./%s\nSize: %d\nMD5sum: %s\nSHA256: %s\n",
		control, file, len(b), hex.EncodeToString(md[:]), hex.EncodeToString(sh[:])))
	writeFile(t, filepath.Join(r.repo, "Packages"), strings.Join(r.debs, "\n"))
}

// do runs one action the way signetd does: DDL validation, Validate, Run.
func (r *aptRoot) do(t *testing.T, action string, raw map[string]any) (*plugins.Result, error) {
	t.Helper()
	return runAction(t, r.pkg, action, raw)
}

func runAction(t *testing.T, p *Package, action string, raw map[string]any) (*plugins.Result, error) {
	t.Helper()
	params, err := plugins.Prepare(p, action, raw)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	return p.Run(ctx, &plugins.Request{Action: action, Params: params, Log: log, Identity: "test"})
}

func (r *aptRoot) installedFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(r.dir, "opt", name, "VERSION"))
	if errors.Is(err, os.ErrNotExist) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// hostHas reports whether the real machine's dpkg database knows the
// package, to prove the tests never touch it.
func hostHas(name string) bool {
	return exec.Command("dpkg-query", "--show", "--", name).Run() == nil
}

// TestAptLifecycle drives real apt-get and dpkg against an isolated root:
// install, idempotent repeats, update to an exact version (up and down),
// update to the newest, check_version pass and fail, holds, remove.
func TestAptLifecycle(t *testing.T) {
	const name = "signet-tinyapp"
	if hostHas(name) {
		t.Skipf("%s is installed on this host; the test needs it absent to prove isolation", name)
	}
	r := newAptRoot(t)
	r.addDeb(t, name, "1.0", "")
	r.addDeb(t, name, "1.1", "")

	steps := []struct {
		action  string
		params  map[string]any
		changed bool
		version string // installed version afterwards, "" when not installed
		prev    any    // Data["previous"]; nil when it must be absent
		wantErr string // substring of the error
	}{
		{action: "refresh", params: map[string]any{}},
		{action: "status", params: map[string]any{"package": name}},
		{action: "check_version", params: map[string]any{"package": name, "version": "1.0"}, wantErr: "package signet-tinyapp: want 1.0, not installed"},
		{action: "install", params: map[string]any{"package": name, "version": "1.0"}, changed: true, version: "1.0", prev: ""},
		{action: "install", params: map[string]any{"package": name, "version": "1.0"}, version: "1.0"},
		{action: "install", params: map[string]any{"package": name}, version: "1.0"},
		{action: "check_version", params: map[string]any{"package": name, "version": "1.0"}, version: "1.0"},
		{action: "check_version", params: map[string]any{"package": name, "version": "0:1.0"}, version: "1.0"},
		{action: "check_version", params: map[string]any{"package": name, "version": "1.1"}, wantErr: "package signet-tinyapp: want 1.1, installed 1.0"},
		{action: "check_version", params: map[string]any{"package": name, "version": "9.9"}, wantErr: "want 9.9, installed 1.0 (apt: version 9.9 is not available from the configured repositories"},
		{action: "update", params: map[string]any{"package": name, "version": "1.1"}, changed: true, version: "1.1", prev: "1.0"},
		{action: "update", params: map[string]any{"package": name, "version": "1.1"}, version: "1.1"},
		{action: "update", params: map[string]any{"package": name, "version": "1.0"}, changed: true, version: "1.0", prev: "1.1"},
		{action: "update", params: map[string]any{"package": name}, changed: true, version: "1.1", prev: "1.0"},
		{action: "update", params: map[string]any{"package": name}, version: "1.1"},
		{action: "update", params: map[string]any{"package": name, "version": "9.9"}, wantErr: "Version '9.9' for 'signet-tinyapp' was not found"},
		{action: "status", params: map[string]any{"package": name}, version: "1.1"},
		{action: "remove", params: map[string]any{"package": name}, changed: true, prev: "1.1"},
		{action: "remove", params: map[string]any{"package": name}},
		{action: "status", params: map[string]any{"package": name}},
		{action: "update", params: map[string]any{"package": name}, changed: true, version: "1.1", prev: ""},
	}
	for i, s := range steps {
		res, err := r.do(t, s.action, s.params)
		where := fmt.Sprintf("step %d: %s %v", i, s.action, s.params)
		if s.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), s.wantErr) {
				t.Fatalf("%s: got error %v, want one containing %q", where, err, s.wantErr)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", where, err)
		}
		if res.Changed != s.changed {
			t.Errorf("%s: changed = %v, want %v (%s)", where, res.Changed, s.changed, res.Summary)
		}
		if s.action == "refresh" {
			continue
		}
		if got := res.Data["package"]; got != name {
			t.Errorf("%s: data package = %v", where, got)
		}
		if got, want := res.Data["installed"], s.version != ""; got != want {
			t.Errorf("%s: data installed = %v, want %v", where, got, want)
		}
		if got := res.Data["version"]; got != s.version {
			t.Errorf("%s: data version = %q, want %q", where, got, s.version)
		}
		if got, ok := res.Data["previous"]; (s.prev == nil) == ok || (ok && got != s.prev) {
			t.Errorf("%s: data previous = %v (present %v), want %v", where, got, ok, s.prev)
		}
		// The file the package ships must be on disk under the root, and
		// only while installed.
		if got := r.installedFile(t, name); got != s.version {
			t.Errorf("%s: %s/opt/%s/VERSION holds %q, want %q", where, r.dir, name, got, s.version)
		}
	}
	if hostHas(name) {
		t.Errorf("%s leaked into the host's dpkg database", name)
	}
}

// TestAptHeld proves check_version and update name a dpkg hold as the reason.
func TestAptHeld(t *testing.T) {
	const name = "signet-heldapp"
	r := newAptRoot(t)
	r.addDeb(t, name, "1.0", "")
	r.addDeb(t, name, "1.1", "")
	mustDo(t, r, "refresh", map[string]any{})
	mustDo(t, r, "install", map[string]any{"package": name, "version": "1.0"})
	if res, err := command.Run(context.Background(), command.Spec{Argv: []string{"apt-mark", "hold", "--", name}, ExtraEnv: r.pkg.be.(*apt).env()}); err != nil {
		t.Fatalf("apt-mark hold: %v %v", err, res)
	}
	res := mustDo(t, r, "status", map[string]any{"package": name})
	if res.Data["held"] != true || res.Data["state"] != "installed" {
		t.Errorf("status data = %v, want held=true state=installed", res.Data)
	}
	_, err := r.do(t, "check_version", map[string]any{"package": name, "version": "1.1"})
	var ve *VersionError
	if !errors.As(err, &ve) || ve.Installed != "1.0" || ve.Want != "1.1" {
		t.Fatalf("check_version error = %v, want a VersionError want 1.1 installed 1.0", err)
	}
	if want := "package signet-heldapp: want 1.1, installed 1.0 (apt: held package)"; err.Error() != want {
		t.Errorf("check_version error = %q, want %q", err, want)
	}
	_, err = r.do(t, "update", map[string]any{"package": name, "version": "1.1"})
	t.Logf("operator sees: %v", err)
	if err == nil || !strings.Contains(err.Error(), "Held packages were changed") || !strings.Contains(err.Error(), "(apt: held package)") {
		t.Errorf("update of a held package: error = %v, want apt's held-package error and the reason", err)
	}
	if got := r.installedFile(t, name); got != "1.0" {
		t.Errorf("held package moved to %q", got)
	}
}

// TestAptFailingPreinst proves a package whose preinst exits 1 gives an
// error quoting dpkg, and is left not installed.
func TestAptFailingPreinst(t *testing.T) {
	const name = "signet-badapp"
	r := newAptRoot(t)
	r.addDeb(t, name, "1.0", "#!/bin/sh\necho 'signet-badapp: refusing to install' >&2\nexit 1\n")
	mustDo(t, r, "refresh", map[string]any{})
	_, err := r.do(t, "install", map[string]any{"package": name, "version": "1.0"})
	if err == nil {
		t.Fatal("install succeeded, want the preinst failure")
	}
	t.Logf("operator sees: %v", err)
	for _, want := range []string{"install signet-badapp 1.0:", "apt-get exited with status 100", "pre-installation script subprocess returned error exit status 1"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
	res := mustDo(t, r, "status", map[string]any{"package": name})
	if res.Data["installed"] != false {
		t.Errorf("status after failed install = %v, want not installed", res.Data)
	}
}

// TestAptUnknownPackage proves update of a package no repository offers
// fails with ErrNoCandidate, and install says apt cannot find it.
func TestAptUnknownPackage(t *testing.T) {
	r := newAptRoot(t)
	mustDo(t, r, "refresh", map[string]any{})
	_, err := r.do(t, "update", map[string]any{"package": "signet-nosuch"})
	if !errors.Is(err, ErrNoCandidate) {
		t.Errorf("update error = %v, want ErrNoCandidate", err)
	}
	_, err = r.do(t, "install", map[string]any{"package": "signet-nosuch", "version": "1.0"})
	if err == nil || !strings.Contains(err.Error(), "Unable to locate package signet-nosuch") {
		t.Errorf("install error = %v, want apt's 'Unable to locate package'", err)
	}
}

// TestAptRefreshFailure proves refresh reports a repository that cannot be
// fetched, which apt-get update itself exits 0 for.
func TestAptRefreshFailure(t *testing.T) {
	r := newAptRoot(t)
	writeFile(t, filepath.Join(r.dir, "etc/apt/sources.list"), fmt.Sprintf("deb [trusted=yes] file:%s/missing ./\n", r.repo))
	_, err := r.do(t, "refresh", map[string]any{})
	t.Logf("operator sees: %v", err)
	if err == nil || !strings.Contains(err.Error(), "refresh package indexes") {
		t.Errorf("refresh error = %v, want a failure naming the missing repository", err)
	}
}

func mustDo(t *testing.T, r *aptRoot, action string, raw map[string]any) *plugins.Result {
	t.Helper()
	res, err := r.do(t, action, raw)
	if err != nil {
		t.Fatalf("%s %v: %v", action, raw, err)
	}
	return res
}

func mkdir(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
