package packaging

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/signetbus/signet/bus"
)

const (
	testVersion = "1.2.3"
	testCommit  = "c0ffee123456"
)

// built holds the packages `go run ./packaging` made, by name and format
// ("signetd.deb").
type built map[string]string

var (
	buildOnce sync.Once
	builtPkgs built
	buildErr  error
)

// build runs the packaging command once for the whole test binary, from
// the repository root, exactly as the docs tell users to: every .deb, and
// every .rpm when rpm is installed to check them.
func build(t *testing.T) built {
	t.Helper()
	if testing.Short() {
		t.Skip("skipped in -short: builds signet, signetd and their packages")
	}
	buildOnce.Do(func() { builtPkgs, buildErr = buildPackages() })
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtPkgs
}

func buildPackages() (built, error) {
	formats := []string{"deb"}
	if _, err := exec.LookPath("rpm"); err == nil {
		formats = append(formats, "rpm")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		return nil, err
	}
	out, err := os.MkdirTemp("", "signet-packages-")
	if err != nil {
		return nil, err
	}
	cleanups = append(cleanups, func() { os.RemoveAll(out) })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "run", "./packaging", "-version", testVersion, "-commit", testCommit,
		"-formats", strings.Join(formats, ","), "-out", out)
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go run ./packaging: %v\n%s", err, stderr.String())
	}
	// It prints one path per package, named the Debian and RPM way:
	// signet-broker_1.2.3_amd64.deb, signet-broker-1.2.3-1.x86_64.rpm.
	b := built{}
	for _, p := range strings.Fields(string(stdout)) {
		base := filepath.Base(p)
		for _, name := range []string{"signet-broker", "signetd", "signet"} {
			if strings.HasPrefix(base, name+"_"+testVersion+"_") && strings.HasSuffix(base, ".deb") {
				b[name+".deb"] = p
			}
			if strings.HasPrefix(base, name+"-"+testVersion+"-") && strings.HasSuffix(base, ".rpm") {
				b[name+".rpm"] = p
			}
		}
	}
	for _, name := range []string{"signetd", "signet", "signet-broker"} {
		for _, f := range formats {
			if b[name+"."+f] == "" {
				return nil, fmt.Errorf("go run ./packaging made no %s %s; it printed:\n%s", name, f, stdout)
			}
		}
	}
	return b, nil
}

var cleanups []func()

func TestMain(m *testing.M) {
	code := m.Run()
	for _, c := range cleanups {
		c()
	}
	os.Exit(code)
}

func need(t *testing.T, cmds ...string) {
	t.Helper()
	for _, c := range cmds {
		if _, err := exec.LookPath(c); err != nil {
			t.Skipf("skipped: %s is not installed (CI installs it in .ci/run)", c)
		}
	}
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// entry is one file of a package: its type and permissions as ls prints
// them ("-rw-r-----"), and its owner and group.
type entry struct{ perms, owner string }

// want are the files whose mode and owner matter, per package.
var want = map[string]map[string]entry{
	"signetd": {
		"/usr/bin/signetd":                                  {"-rwxr-xr-x", "root/root"},
		"/usr/lib/systemd/system/signetd.service":           {"-rw-r--r--", "root/root"},
		"/etc/signet":                                       {"drwxr-x---", "root/root"},
		"/etc/signet/signetd.yaml":                          {"-rw-r-----", "root/root"},
		"/etc/signet/policy.yaml":                           {"-rw-r-----", "root/root"},
		"/etc/signet/authorized_keys":                       {"-rw-r-----", "root/root"},
		"/etc/logrotate.d/signetd":                          {"-rw-r--r--", "root/root"},
		"/var/log/signet":                                   {"drwxr-x---", "root/root"},
		"/usr/share/man/man1/signetd.1.gz":                  {"-rw-r--r--", "root/root"},
		"/usr/share/bash-completion/completions/signetd":    {"-rw-r--r--", "root/root"},
		"/usr/share/fish/vendor_completions.d/signetd.fish": {"-rw-r--r--", "root/root"},
	},
	"signet": {
		"/usr/bin/signet":                               {"-rwxr-xr-x", "root/root"},
		"/usr/share/man/man1/signet.1.gz":               {"-rw-r--r--", "root/root"},
		"/usr/share/man/man1/signet-ping.1.gz":          {"-rw-r--r--", "root/root"},
		"/usr/share/man/man1/signet-broker.1.gz":        {"-rw-r--r--", "root/root"},
		"/usr/share/bash-completion/completions/signet": {"-rw-r--r--", "root/root"},
	},
	"signet-broker": {
		"/usr/lib/systemd/system/signet-broker.service": {"-rw-r--r--", "root/root"},
		"/etc/signet/broker.env":                        {"-rw-r-----", "root/root"},
	},
}

// conffiles are what dpkg and rpm must keep when an admin changed them.
var conffiles = map[string][]string{
	"signetd":       {"/etc/logrotate.d/signetd", "/etc/signet/authorized_keys", "/etc/signet/policy.yaml", "/etc/signet/signetd.yaml"},
	"signet":        nil,
	"signet-broker": {"/etc/signet/broker.env"},
}

// debContents lists a .deb's files as dpkg-deb -c prints them.
func debContents(t *testing.T, deb string) map[string]entry {
	t.Helper()
	got := map[string]entry{}
	for _, line := range strings.Split(strings.TrimSpace(run(t, "dpkg-deb", "-c", deb)), "\n") {
		f := strings.Fields(line) // perms owner/group size date time path
		if len(f) < 6 {
			t.Fatalf("dpkg-deb -c: unexpected line %q", line)
		}
		p := strings.TrimSuffix(strings.TrimPrefix(f[5], "."), "/")
		got[p] = entry{f[0], f[1]}
	}
	return got
}

func TestDeb(t *testing.T) {
	need(t, "dpkg-deb")
	pkgs := build(t)
	root := t.TempDir()
	for name, files := range want {
		deb := pkgs[name+".deb"]
		if v := strings.TrimSpace(run(t, "dpkg-deb", "-f", deb, "Version")); v != testVersion {
			t.Errorf("%s: Version %q, want %q", name, v, testVersion)
		}
		got := debContents(t, deb)
		for p, w := range files {
			if g, ok := got[p]; !ok {
				t.Errorf("%s: %s is missing", name, p)
			} else if g != w {
				t.Errorf("%s: %s is %s %s, want %s %s", name, p, g.perms, g.owner, w.perms, w.owner)
			}
		}
		for p, g := range got {
			if g.owner != "root/root" {
				t.Errorf("%s: %s is owned by %s, want root/root", name, p, g.owner)
			}
			if strings.HasPrefix(g.perms, "-") && g.perms[8] == 'w' {
				t.Errorf("%s: %s is writable by others (%s)", name, p, g.perms)
			}
		}
		var cf []string
		if b, err := exec.Command("dpkg-deb", "-I", deb, "conffiles").Output(); err == nil {
			cf = strings.Fields(string(b))
		}
		slices.Sort(cf)
		if !slices.Equal(cf, conffiles[name]) {
			t.Errorf("%s: conffiles %v, want %v", name, cf, conffiles[name])
		}
		run(t, "dpkg-deb", "-x", deb, root)
	}
	if dep := strings.TrimSpace(run(t, "dpkg-deb", "-f", pkgs["signet-broker.deb"], "Depends")); dep != "signet (= "+testVersion+")" {
		t.Errorf("signet-broker depends on %q, want the same signet version", dep)
	}

	// The binaries carry the version, the commit and the protocol.
	for _, prog := range []string{"signet", "signetd"} {
		got := strings.TrimSpace(run(t, filepath.Join(root, "usr/bin", prog), "--version"))
		want := fmt.Sprintf("%s %s (commit %s, protocol %d)", prog, testVersion, testCommit, bus.ProtocolVersion)
		if got != want {
			t.Errorf("%s --version: %q, want %q", prog, got, want)
		}
	}

	// The completions parse, and the man pages are man pages.
	for _, prog := range []string{"signet", "signetd"} {
		if _, err := exec.LookPath("bash"); err == nil {
			run(t, "bash", "-n", filepath.Join(root, "usr/share/bash-completion/completions", prog))
		}
		page := run(t, "gzip", "-dc", filepath.Join(root, "usr/share/man/man1", prog+".1.gz"))
		// Each page is titled after its command: SIGNETD, SIGNET, SIGNET-PING.
		if !strings.Contains(page, ".TH \""+strings.ToUpper(prog)+"\" \"1\"") {
			t.Errorf("%s.1.gz has no .TH header:\n%.300s", prog, page)
		}
	}
	t.Run("units", func(t *testing.T) { verifyUnits(t, root) })
	t.Run("broker", func(t *testing.T) { startBrokerAsUnit(t, root) })
	t.Run("logrotate", func(t *testing.T) {
		need(t, "logrotate")
		// -d parses the config and rotates nothing.
		run(t, "logrotate", "-d", "-s", filepath.Join(t.TempDir(), "state"), filepath.Join(root, "etc/logrotate.d/signetd"))
	})
	t.Run("install", func(t *testing.T) { installInRoot(t, pkgs["signetd.deb"]) })
}

// verifyUnits runs systemd-analyze verify on the packaged units. It checks
// that the commands they run exist, so the units' /usr/bin paths are
// pointed into the extracted root, and man pages are looked up there too.
func verifyUnits(t *testing.T, root string) {
	need(t, "systemd-analyze")
	dir := t.TempDir()
	var units []string
	for _, u := range []string{"signetd.service", "signet-broker.service"} {
		b, err := os.ReadFile(filepath.Join(root, "usr/lib/systemd/system", u))
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, u)
		if err := os.WriteFile(p, bytes.ReplaceAll(b, []byte("/usr/bin/"), []byte(root+"/usr/bin/")), 0o644); err != nil {
			t.Fatal(err)
		}
		units = append(units, p)
	}
	cmd := exec.Command("systemd-analyze", append([]string{"verify"}, units...)...)
	cmd.Env = append(os.Environ(), "MANPATH="+filepath.Join(root, "usr/share/man"))
	out, err := cmd.CombinedOutput()
	// verify warns about unknown keys and bad values but still exits 0:
	// any output is a failure.
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

func TestRPM(t *testing.T) {
	need(t, "rpm")
	pkgs := build(t)
	for name, files := range want {
		p := pkgs[name+".rpm"]
		got := map[string]entry{}
		out := run(t, "rpm", "-qp", "--qf", `[%{FILEMODES:perms} %{FILEUSERNAME}/%{FILEGROUPNAME} %{FILENAMES}\n]`, p)
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			f := strings.Fields(line)
			if len(f) != 3 {
				t.Fatalf("rpm -qp: unexpected line %q", line)
			}
			got[f[2]] = entry{f[0], f[1]}
		}
		for path, w := range files {
			if g, ok := got[path]; !ok {
				t.Errorf("%s.rpm: %s is missing", name, path)
			} else if g != w {
				t.Errorf("%s.rpm: %s is %s %s, want %s %s", name, path, g.perms, g.owner, w.perms, w.owner)
			}
		}
		var cf []string
		if out := run(t, "rpm", "-qpc", p); !strings.Contains(out, "(contains no files)") {
			cf = strings.Fields(out)
		}
		slices.Sort(cf)
		if !slices.Equal(cf, conffiles[name]) {
			t.Errorf("%s.rpm: config files %v, want %v", name, cf, conffiles[name])
		}
	}
	t.Run("install", func(t *testing.T) { installRPMInRoot(t, pkgs["signetd.rpm"]) })
}
