package packages

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/signetbus/signet/internal/command"
)

// dnf and rpm are not available on this (Debian) machine, so these tests
// cannot run them. Instead a scripted runner checks every argv the dnf
// backend builds, in order, and answers with fixtures in testdata/dnf of
// rpm and dnf output: the rpm -q and repoquery lines follow the query
// formats this package passes, the other files hold rpm's and dnf's own
// messages ("package X is not installed", "No match for argument",
// versionlock lists of dnf 4 and dnf 5).

type call struct {
	argv   []string
	stdout string // fixture file under testdata/dnf, or "" for none
	stderr string // fixture file under testdata/dnf, or "" for none
	exit   int
}

func script(t *testing.T, calls ...call) runner {
	t.Helper()
	t.Cleanup(func() {
		if len(calls) > 0 {
			t.Errorf("%d expected commands never ran, first %q", len(calls), calls[0].argv)
		}
	})
	return func(_ context.Context, spec command.Spec) (*command.Result, error) {
		if len(calls) == 0 {
			t.Errorf("unexpected command %q", spec.Argv)
			return nil, errors.New("unexpected command")
		}
		c := calls[0]
		calls = calls[1:]
		if !slices.Equal(spec.Argv, c.argv) {
			t.Errorf("argv = %q\n want %q", spec.Argv, c.argv)
		}
		res := &command.Result{Argv: spec.Argv, ExitCode: c.exit, Stdout: fixture(t, c.stdout), Stderr: fixture(t, c.stderr)}
		if c.exit != 0 {
			return res, &command.ExitError{Result: res}
		}
		return res, nil
	}
}

func fixture(t *testing.T, name string) string {
	t.Helper()
	if name == "" {
		return ""
	}
	b, err := os.ReadFile(filepath.Join("testdata", "dnf", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

var (
	rpmQ         = []string{"rpm", "-q", "--queryformat", rpmQueryFormat, "--", "tinyapp"}
	lockList     = []string{"dnf", "-y", "-q", "versionlock", "list"}
	repoLatest   = []string{"dnf", "-y", "-q", "repoquery", "--latest-limit=1", "--queryformat", dnfQueryFormat, "--", "tinyapp"}
	repoAll      = []string{"dnf", "-y", "-q", "repoquery", "--queryformat", dnfQueryFormat, "--", "tinyapp"}
	absent       = call{argv: rpmQ, stdout: "rpm-q-absent.txt", exit: 1}
	at10         = call{argv: rpmQ, stdout: "rpm-q-1.0.txt"}
	at11         = call{argv: rpmQ, stdout: "rpm-q-1.1.txt"}
	notLocked    = call{argv: lockList}
	lockedDnf4   = call{argv: lockList, stdout: "versionlock-dnf4.txt"}
	lockedDnf5   = call{argv: lockList, stdout: "versionlock-dnf5.txt"}
	noLockPlugin = call{argv: lockList, stderr: "install-nomatch.stderr", exit: 2}
)

func TestDnf(t *testing.T) {
	cases := []struct {
		name    string
		action  string
		params  map[string]any
		calls   []call
		changed bool
		data    map[string]any
		wantErr string
	}{
		{name: "install exact when absent", action: "install", params: map[string]any{"package": "tinyapp", "version": "1.0"},
			calls:   []call{absent, {argv: []string{"dnf", "-y", "install", "--", "tinyapp-1.0"}}, at10, notLocked},
			changed: true, data: map[string]any{"package": "tinyapp", "installed": true, "version": "1.0-1.el9", "previous": ""}},
		{name: "install is idempotent", action: "install", params: map[string]any{"package": "tinyapp", "version": "1.0-1.el9"},
			calls: []call{at10, notLocked},
			data:  map[string]any{"package": "tinyapp", "installed": true, "version": "1.0-1.el9"}},
		{name: "update to newest", action: "update", params: map[string]any{"package": "tinyapp"},
			calls: []call{at10, noLockPlugin, {argv: repoLatest, stdout: "repoquery-latest.txt"},
				{argv: []string{"dnf", "-y", "install", "--", "tinyapp-1.1-1.el9"}}, at11, notLocked},
			changed: true, data: map[string]any{"package": "tinyapp", "installed": true, "version": "1.1-1.el9", "previous": "1.0-1.el9"}},
		{name: "update already newest", action: "update", params: map[string]any{"package": "tinyapp"},
			calls: []call{at11, notLocked, {argv: repoLatest, stdout: "repoquery-latest.txt"}},
			data:  map[string]any{"package": "tinyapp", "installed": true, "version": "1.1-1.el9"}},
		{name: "update down to exact", action: "update", params: map[string]any{"package": "tinyapp", "version": "0:1.0-1.el9"},
			calls:   []call{at11, notLocked, {argv: []string{"dnf", "-y", "install", "--", "tinyapp-0:1.0-1.el9"}}, at10, notLocked},
			changed: true, data: map[string]any{"package": "tinyapp", "installed": true, "version": "1.0-1.el9", "previous": "1.1-1.el9"}},
		{name: "check_version passes", action: "check_version", params: map[string]any{"package": "tinyapp", "version": "1.0"},
			calls: []call{at10, notLocked},
			data:  map[string]any{"package": "tinyapp", "installed": true, "version": "1.0-1.el9"}},
		{name: "check_version locked dnf4", action: "check_version", params: map[string]any{"package": "tinyapp", "version": "1.1"},
			calls:   []call{at10, lockedDnf4},
			wantErr: "package tinyapp: want 1.1, installed 1.0-1.el9 (dnf: versionlock pins the package)"},
		{name: "check_version locked dnf5", action: "check_version", params: map[string]any{"package": "tinyapp", "version": "1.1"},
			calls:   []call{at10, lockedDnf5},
			wantErr: "package tinyapp: want 1.1, installed 1.0-1.el9 (dnf: versionlock pins the package)"},
		{name: "check_version unavailable", action: "check_version", params: map[string]any{"package": "tinyapp", "version": "9.9"},
			calls:   []call{at10, notLocked, {argv: repoAll, stdout: "repoquery-all.txt"}},
			wantErr: "package tinyapp: want 9.9, installed 1.0-1.el9 (dnf: version 9.9 is not available from the enabled repositories"},
		{name: "check_version available but not installed", action: "check_version", params: map[string]any{"package": "tinyapp", "version": "1.1"},
			calls:   []call{absent, {argv: repoAll, stdout: "repoquery-all.txt"}},
			wantErr: "package tinyapp: want 1.1, not installed"},
		{name: "install of a missing version quotes dnf", action: "install", params: map[string]any{"package": "tinyapp", "version": "9.9"},
			calls: []call{absent, {argv: []string{"dnf", "-y", "install", "--", "tinyapp-9.9"}, stdout: "install-nomatch.stdout", stderr: "install-nomatch.stderr", exit: 1},
				absent, {argv: repoAll, stdout: "repoquery-all.txt"}},
			wantErr: "install tinyapp 9.9: dnf exited with status 1: No match for argument: tinyapp-9.9; Error: Unable to find a match: tinyapp-9.9 (dnf: version 9.9 is not available"},
		{name: "remove", action: "remove", params: map[string]any{"package": "tinyapp"},
			calls:   []call{at10, notLocked, {argv: []string{"dnf", "-y", "remove", "--", "tinyapp"}}, absent},
			changed: true, data: map[string]any{"package": "tinyapp", "installed": false, "version": "", "previous": "1.0-1.el9"}},
		{name: "remove when absent", action: "remove", params: map[string]any{"package": "tinyapp"},
			calls: []call{absent},
			data:  map[string]any{"package": "tinyapp", "installed": false, "version": ""}},
		{name: "status", action: "status", params: map[string]any{"package": "tinyapp"},
			calls: []call{at11, lockedDnf4},
			data:  map[string]any{"package": "tinyapp", "installed": true, "version": "1.1-1.el9", "held": true, "state": "installed"}},
		{name: "refresh", action: "refresh", params: map[string]any{},
			calls: []call{{argv: []string{"dnf", "-y", "makecache"}}},
			data:  map[string]any{"backend": "dnf"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := newTestPackage(t, "dnf", script(t, c.calls...))
			res, err := runAction(t, p, c.action, c.params)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("err = %v\nwant one containing %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if res.Changed != c.changed {
				t.Errorf("changed = %v, want %v", res.Changed, c.changed)
			}
			if len(res.Data) != len(c.data) {
				t.Errorf("data = %v, want %v", res.Data, c.data)
			}
			for k, v := range c.data {
				if res.Data[k] != v {
					t.Errorf("data[%s] = %#v, want %#v", k, res.Data[k], v)
				}
			}
		})
	}
}

func TestDnfInstallRoot(t *testing.T) {
	root := "/srv/images/web"
	cfg := []byte(`{"backend":"dnf","installroot":"` + root + `"}`)
	run := script(t,
		call{argv: []string{"rpm", "--root=" + root, "-q", "--queryformat", rpmQueryFormat, "--", "tinyapp"}, stdout: "rpm-q-absent.txt", exit: 1},
		call{argv: []string{"dnf", "-y", "--installroot=" + root, "-q", "repoquery", "--latest-limit=1", "--queryformat", dnfQueryFormat, "--", "tinyapp"}, stdout: "repoquery-latest.txt"},
		call{argv: []string{"dnf", "-y", "--installroot=" + root, "install", "--", "tinyapp-1.1-1.el9"}},
		call{argv: []string{"rpm", "--root=" + root, "-q", "--queryformat", rpmQueryFormat, "--", "tinyapp"}, stdout: "rpm-q-1.1.txt"},
		call{argv: []string{"dnf", "-y", "--installroot=" + root, "-q", "versionlock", "list"}},
	)
	p, err := newPackage(cfg, run, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := runAction(t, p, "install", map[string]any{"package": "tinyapp"})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Changed || res.Data["version"] != "1.1-1.el9" {
		t.Errorf("result = %+v, want 1.1-1.el9 installed", res)
	}
}

func TestParseVersionlock(t *testing.T) {
	cases := []struct {
		out, pkg string
		want     bool
	}{
		{fixture(t, "versionlock-dnf4.txt"), "tinyapp", true},
		{fixture(t, "versionlock-dnf5.txt"), "tinyapp", true},
		{"tinyapp-devel-0:1.0-1.el9.*\n", "tinyapp", false},
		{"!tinyapp-0:1.0-1.el9.*\n", "tinyapp", false},
		{"Package name: tinyapp-devel\n", "tinyapp", false},
		{"", "tinyapp", false},
	}
	for _, c := range cases {
		if got := parseVersionlock(c.out, c.pkg); got != c.want {
			t.Errorf("parseVersionlock(%q, %q) = %v, want %v", c.out, c.pkg, got, c.want)
		}
	}
}
