package packages

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/signetbus/signet/internal/command"
	"github.com/signetbus/signet/plugins"
)

// neverRun fails the test if validation lets anything reach a program.
func neverRun(t *testing.T) runner {
	return func(_ context.Context, spec command.Spec) (*command.Result, error) {
		t.Errorf("a program ran for a refused input: %q", spec.Argv)
		return nil, errors.New("must not run")
	}
}

func newTestPackage(t *testing.T, backend string, run runner) *Package {
	t.Helper()
	cfg, _ := json.Marshal(Config{Backend: backend})
	p, err := newPackage(cfg, run, func(string) (string, error) { return "", errors.New("lookPath must not be called with a backend set") })
	if err != nil {
		t.Fatalf("newPackage(%s): %v", backend, err)
	}
	return p
}

func TestValidateRefuses(t *testing.T) {
	long := strings.Repeat("a", maxNameLen+1)
	cases := []struct {
		backend, action, param string
		params                 plugins.Params
		msg                    string // substring of the ParamError message
	}{
		// Rules shared by both grammars.
		{"apt", "install", "package", plugins.Params{"package": "nginx; rm -rf /"}, "is not a Debian package name"},
		{"apt", "install", "package", plugins.Params{"package": "-oAPT::Update::Pre-Invoke::=x"}, "must not start with '-'"},
		{"apt", "install", "package", plugins.Params{"package": "--allow-unauthenticated"}, "must not start with '-'"},
		{"apt", "install", "package", plugins.Params{"package": "../x"}, "is not a Debian package name"},
		{"apt", "install", "package", plugins.Params{"package": "a/../../x"}, "is not a Debian package name"},
		{"apt", "status", "package", plugins.Params{"package": ""}, "must not be empty"},
		{"apt", "status", "package", plugins.Params{"package": long}, "at most 128 bytes"},
		{"apt", "status", "package", plugins.Params{"package": "nginx\x00"}, "control characters"},
		{"apt", "status", "package", plugins.Params{"package": "nginx\nx"}, "control characters"},
		{"apt", "status", "package", plugins.Params{"package": "nginx x"}, "is not a Debian package name"},
		{"apt", "status", "package", plugins.Params{"package": "$(reboot)"}, "is not a Debian package name"},
		{"apt", "status", "package", plugins.Params{"package": "`id`"}, "is not a Debian package name"},
		// Debian name grammar.
		{"apt", "remove", "package", plugins.Params{"package": "Nginx"}, "is not a Debian package name"},
		{"apt", "remove", "package", plugins.Params{"package": "n"}, "is not a Debian package name"},
		{"apt", "remove", "package", plugins.Params{"package": ".nginx"}, "is not a Debian package name"},
		{"apt", "remove", "package", plugins.Params{"package": "nginx=1.0"}, "is not a Debian package name"},
		{"apt", "remove", "package", plugins.Params{"package": "nginx*"}, "is not a Debian package name"},
		{"apt", "remove", "package", plugins.Params{"package": "nginx:amd64"}, "is not a Debian package name"},
		// Debian version grammar.
		{"apt", "install", "version", plugins.Params{"package": "nginx", "version": "1.0; reboot"}, "is not a Debian version"},
		{"apt", "install", "version", plugins.Params{"package": "nginx", "version": "-1.0"}, "must not start with '-'"},
		{"apt", "install", "version", plugins.Params{"package": "nginx", "version": "v1.0"}, "is not a Debian version"},
		{"apt", "install", "version", plugins.Params{"package": "nginx", "version": "1.0:2"}, "is not a Debian version"},
		{"apt", "install", "version", plugins.Params{"package": "nginx", "version": "a:1.0"}, "is not a Debian version"},
		{"apt", "install", "version", plugins.Params{"package": "nginx", "version": ":1.0"}, "is not a Debian version"},
		{"apt", "install", "version", plugins.Params{"package": "nginx", "version": "1.0-"}, "is not a Debian version"},
		{"apt", "install", "version", plugins.Params{"package": "nginx", "version": "1.0_1"}, "is not a Debian version"},
		{"apt", "install", "version", plugins.Params{"package": "nginx", "version": "1.0/../x"}, "is not a Debian version"},
		{"apt", "update", "version", plugins.Params{"package": "nginx", "version": "1.0\n"}, "control characters"},
		{"apt", "update", "version", plugins.Params{"package": "nginx", "version": ""}, "must not be empty"},
		{"apt", "update", "version", plugins.Params{"package": "nginx", "version": "1" + strings.Repeat("0", maxVersionLen)}, "at most 128 bytes"},
		{"apt", "check_version", "version", plugins.Params{"package": "nginx"}, "must not be empty"},
		// RPM grammars.
		{"dnf", "install", "package", plugins.Params{"package": "nginx; rm -rf /"}, "is not an RPM package name"},
		{"dnf", "install", "package", plugins.Params{"package": "-x"}, "must not start with '-'"},
		{"dnf", "install", "package", plugins.Params{"package": "../x"}, "is not an RPM package name"},
		{"dnf", "install", "package", plugins.Params{"package": "perl(Foo)"}, "is not an RPM package name"},
		{"dnf", "install", "package", plugins.Params{"package": "nginx*"}, "is not an RPM package name"},
		{"dnf", "install", "package", plugins.Params{"package": "@group"}, "is not an RPM package name"},
		{"dnf", "install", "package", plugins.Params{"package": ""}, "must not be empty"},
		{"dnf", "install", "version", plugins.Params{"package": "nginx", "version": "1.0-1-2"}, "is not an RPM version"},
		{"dnf", "install", "version", plugins.Params{"package": "nginx", "version": ".1.0"}, "is not an RPM version"},
		{"dnf", "install", "version", plugins.Params{"package": "nginx", "version": "1.0 x"}, "is not an RPM version"},
		{"dnf", "install", "version", plugins.Params{"package": "nginx", "version": "1.0\x00"}, "control characters"},
		{"dnf", "install", "version", plugins.Params{"package": "nginx", "version": "x:1.0"}, "is not an RPM version"},
	}
	for _, c := range cases {
		t.Run(c.backend+"/"+c.action+"/"+c.param+"="+strings.ToValidUTF8(c.params.String(c.param), "?"), func(t *testing.T) {
			p := newTestPackage(t, c.backend, neverRun(t))
			err := p.Validate(c.action, c.params)
			var pe *plugins.ParamError
			if !errors.As(err, &pe) {
				t.Fatalf("Validate = %v, want a ParamError", err)
			}
			if pe.Param != c.param || pe.Action != c.action {
				t.Errorf("ParamError names param %q of %q, want %q of %q", pe.Param, pe.Action, c.param, c.action)
			}
			wantRule := "package_name"
			if c.param == "version" {
				wantRule = "version"
			}
			if pe.Rule != wantRule {
				t.Errorf("rule = %q, want %q", pe.Rule, wantRule)
			}
			if !strings.Contains(pe.Msg, c.msg) {
				t.Errorf("message %q does not say %q", pe.Msg, c.msg)
			}
			if !strings.Contains(err.Error(), `"`+c.param+`"`) {
				t.Errorf("error %q does not name the parameter", err)
			}
			// Run refuses too, even when a caller skipped Validate.
			if _, err := p.Run(context.Background(), &plugins.Request{Action: c.action, Params: c.params}); !errors.As(err, &pe) {
				t.Errorf("Run = %v, want a ParamError", err)
			}
		})
	}
}

func TestValidateAccepts(t *testing.T) {
	cases := []struct {
		backend string
		params  plugins.Params
	}{
		{"apt", plugins.Params{"package": "nginx"}},
		{"apt", plugins.Params{"package": "libstdc++6", "version": "12.2.0-14"}},
		{"apt", plugins.Params{"package": "middleware", "version": "1.4.2"}},
		{"apt", plugins.Params{"package": "openssh-server", "version": "1:9.2p1-2+deb12u3"}},
		{"apt", plugins.Params{"package": "linux-image-6.1.0-18-amd64", "version": "6.1.76-1"}},
		{"apt", plugins.Params{"package": "foo", "version": "1.0~rc1-1-2"}},
		{"apt", plugins.Params{"package": "g++", "version": "4:12.2.0-3"}},
		{"dnf", plugins.Params{"package": "nginx", "version": "1.20.1-14.el9_2.1"}},
		{"dnf", plugins.Params{"package": "NetworkManager", "version": "1:1.46.0-4.el9"}},
		{"dnf", plugins.Params{"package": "python3.11", "version": "3.11.5"}},
		{"dnf", plugins.Params{"package": "_unusual", "version": "2.0^20240101git1-1"}},
	}
	for _, c := range cases {
		p := newTestPackage(t, c.backend, neverRun(t))
		for _, action := range []string{"status", "install", "update", "remove", "check_version"} {
			params := c.params
			if action == "status" || action == "remove" {
				params = plugins.Params{"package": c.params["package"]}
			}
			if action == "check_version" && !params.Has("version") {
				params = plugins.Params{"package": c.params["package"], "version": "1.0"}
			}
			if err := p.Validate(action, params); err != nil {
				t.Errorf("%s %s %v: %v", c.backend, action, params, err)
			}
		}
	}
}

func TestNewConfig(t *testing.T) {
	none := func(string) (string, error) { return "", errors.New("not found") }
	only := func(tools ...string) func(string) (string, error) {
		return func(n string) (string, error) {
			for _, t := range tools {
				if t == n {
					return "/usr/bin/" + n, nil
				}
			}
			return "", errors.New("not found")
		}
	}
	cases := []struct {
		name    string
		config  string
		look    func(string) (string, error)
		backend string // "" when New must fail
		errText string
	}{
		{"empty detects apt", ``, only("apt-get", "apt-cache", "dpkg-query", "dnf", "rpm"), "apt", ""},
		{"null detects dnf", `null`, only("dnf", "rpm"), "dnf", ""},
		{"nothing found", `{}`, none, "", "no supported package manager"},
		{"explicit dnf", `{"backend":"dnf","installroot":"/srv/root"}`, none, "dnf", ""},
		{"unknown key", `{"backend":"apt","root":"/x"}`, none, "", `unknown field "root"`},
		{"bad backend", `{"backend":"yum"}`, none, "", `backend must be "apt" or "dnf", got "yum"`},
		{"relative apt_config", `{"backend":"apt","apt_config":"apt.conf"}`, none, "", "apt_config must be a clean absolute path"},
		{"unclean admindir", `{"backend":"apt","dpkg_admindir":"/var/lib/../lib/dpkg"}`, none, "", "dpkg_admindir must be a clean absolute path"},
		{"installroot with apt", `{"backend":"apt","installroot":"/x"}`, none, "", "installroot is for the dnf backend"},
		{"apt_config with dnf", `{"backend":"dnf","apt_config":"/x"}`, none, "", "are for the apt backend"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, err := newPackage(json.RawMessage(c.config), command.Run, c.look)
			if c.backend == "" {
				if err == nil || !strings.Contains(err.Error(), c.errText) {
					t.Fatalf("err = %v, want %q", err, c.errText)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := p.be.name(); got != c.backend {
				t.Errorf("backend = %q, want %q", got, c.backend)
			}
		})
	}
}

func TestRegistered(t *testing.T) {
	info, ok := plugins.Lookup("package")
	if !ok {
		t.Fatal(`"package" is not registered`)
	}
	p, err := info.New(json.RawMessage(`{"backend":"apt"}`))
	if err != nil {
		t.Fatal(err)
	}
	d := p.Describe()
	want := []string{"check_version", "install", "refresh", "remove", "status", "update"}
	if got := d.ActionNames(); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("actions = %v, want %v", got, want)
	}
	// The DDL itself refuses a missing package and unknown params.
	act, _ := d.Action("install")
	if _, err := act.Validate(map[string]any{"version": "1.0"}); err == nil {
		t.Error("DDL accepted install without package")
	}
	if _, err := act.Validate(map[string]any{"package": "x", "force": "yes"}); err == nil {
		t.Error("DDL accepted an unknown parameter")
	}
}

func TestSameVersion(t *testing.T) {
	cases := []struct {
		deb             bool
		installed, want string
		same            bool
	}{
		{true, "1.0", "1.0", true},
		{true, "1.0", "0:1.0", true},
		{true, "1:1.0", "1.0", false},
		{true, "1.0-1", "1.0", false},
		{false, "1.0-1.el9", "1.0", true},
		{false, "1.0-1.el9", "1.0-1.el9", true},
		{false, "1.0-1.el9", "0:1.0-1.el9", true},
		{false, "1.0-1.el9", "1.0-2.el9", false},
		{false, "2:1.0-1.el9", "1.0", false},
		{false, "1.0.1-1", "1.0", false},
	}
	for _, c := range cases {
		got := sameRPMVersion(c.installed, c.want)
		if c.deb {
			got = sameDebVersion(c.installed, c.want)
		}
		if got != c.same {
			t.Errorf("same(%q, %q) deb=%v = %v, want %v", c.installed, c.want, c.deb, got, c.same)
		}
	}
}
