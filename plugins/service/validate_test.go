package service

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/signetbus/signet/internal/command"
	"github.com/signetbus/signet/plugins"
)

func newTestService(t *testing.T, cfg Config) *Service {
	t.Helper()
	s, err := newService(cfg, BackendRunit, command.Run)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestValidateServiceName checks every rejection of the name grammar,
// through the DDL (what signetd checks first) and through Validate (what
// Run checks again).
func TestValidateServiceName(t *testing.T) {
	s := newTestService(t, Config{})
	act, _ := s.Describe().Action("start")
	good := []string{"nginx", "nginx.service", "getty@tty1.service", "a", "sys-fs-fuse:x", "my_app-2.0", strings.Repeat("a", 255)}
	for _, name := range good {
		if err := s.Validate("start", plugins.Params{"service": name}); err != nil {
			t.Errorf("Validate(%q) = %v, want ok", name, err)
		}
		if _, err := act.Validate(map[string]any{"service": name}); err != nil {
			t.Errorf("DDL Validate(%q) = %v, want ok", name, err)
		}
	}
	bad := []struct{ why, name string }{
		{"empty", ""},
		{"path traversal", "../x"},
		{"slash", "a/b"},
		{"absolute path", "/etc/service/x"},
		{"leading dot", ".x"},
		{"dot dot", ".."},
		{"leading dash (option)", "-x"},
		{"double dash", "--now"},
		{"semicolon", "a;b"},
		{"command substitution", "$(x)"},
		{"backtick", "`x`"},
		{"pipe", "a|b"},
		{"ampersand", "a&b"},
		{"space", "a b"},
		{"tab", "a\tb"},
		{"newline", "a\nb"},
		{"NUL", "a\x00b"},
		{"glob", "a*"},
		{"quote", "a'b"},
		{"non-ASCII", "nginé"},
		{"too long", strings.Repeat("a", 256)},
	}
	for _, tc := range bad {
		t.Run(tc.why, func(t *testing.T) {
			err := s.Validate("start", plugins.Params{"service": tc.name})
			var pe *plugins.ParamError
			if !errors.As(err, &pe) || pe.Param != "service" || pe.Rule != "service_name" {
				t.Fatalf("Validate(%q) = %v, want a service_name ParamError", tc.name, err)
			}
			if _, err := act.Validate(map[string]any{"service": tc.name}); err == nil {
				t.Errorf("DDL accepted %q", tc.name)
			}
		})
	}
}

func TestValidateTimeout(t *testing.T) {
	s := newTestService(t, Config{})
	act, _ := s.Describe().Action("restart")
	p, err := act.Validate(map[string]any{"service": "web"})
	if err != nil || p.String("timeout") != "30s" {
		t.Fatalf("default timeout = %q, %v; want 30s", p.String("timeout"), err)
	}
	for _, d := range []string{"1s", "90s", "10m"} {
		if _, err := act.Validate(map[string]any{"service": "web", "timeout": d}); err != nil {
			t.Errorf("timeout %s refused: %v", d, err)
		}
	}
	for _, d := range []string{"11m", "0s", "-5s", "1h", "soon", "30"} {
		if _, err := act.Validate(map[string]any{"service": "web", "timeout": d}); err == nil {
			t.Errorf("DDL accepted timeout %q", d)
		}
		err := s.Validate("restart", plugins.Params{"service": "web", "timeout": d})
		var pe *plugins.ParamError
		if !errors.As(err, &pe) || pe.Param != "timeout" {
			t.Errorf("Validate(timeout %q) = %v, want a timeout ParamError", d, err)
		}
	}
}

func TestAllowList(t *testing.T) {
	for _, tc := range []struct {
		backend string
		list    []string
		allowed []string
		refused []string
	}{
		{BackendRunit, []string{"middleware", "nginx"}, []string{"middleware", "nginx"}, []string{"sshd", "nginx.service", "middleware2"}},
		{BackendSystemd, []string{"middleware", "nginx.service"}, []string{"middleware", "middleware.service", "nginx", "nginx.service"}, []string{"sshd", "nginx.socket", "middleware@1"}},
	} {
		s, err := newService(Config{Backend: tc.backend, Services: tc.list}, "", command.Run)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range tc.allowed {
			if err := s.Validate("status", plugins.Params{"service": name}); err != nil {
				t.Errorf("%s: %q refused: %v", tc.backend, name, err)
			}
		}
		for _, name := range tc.refused {
			err := s.Validate("stop", plugins.Params{"service": name})
			var pe *plugins.ParamError
			if !errors.As(err, &pe) || pe.Rule != "not_allowed" || !strings.Contains(err.Error(), "not in this host's services list") {
				t.Errorf("%s: Validate(%q) = %v, want not_allowed", tc.backend, name, err)
			}
		}
	}
}

func TestValidateUnknownAction(t *testing.T) {
	s := newTestService(t, Config{})
	if err := s.Validate("enable", plugins.Params{"service": "web"}); err == nil {
		t.Fatal("unknown action accepted")
	}
}

func TestConfig(t *testing.T) {
	for _, tc := range []struct {
		name, config, detected string
		wantBackend            string
		wantErr                string
	}{
		{"detected runit", ``, BackendRunit, BackendRunit, ""},
		{"detected systemd", `{}`, BackendSystemd, BackendSystemd, ""},
		{"override", `{"backend":"runit","service_dir":"/srv/service"}`, BackendSystemd, BackendRunit, ""},
		{"nothing found", `{}`, "", "", "no service manager found"},
		{"unknown backend", `{"backend":"upstart"}`, BackendRunit, "", `backend: want "systemd" or "runit", got "upstart"`},
		{"unknown key", `{"servicedir":"/x"}`, BackendRunit, "", "unknown field"},
		{"service_dir with systemd", `{"service_dir":"/etc/service"}`, BackendSystemd, "", "service_dir is a runit setting"},
		{"relative service_dir", `{"service_dir":"etc/service"}`, BackendRunit, "", "clean absolute path"},
		{"unclean service_dir", `{"service_dir":"/etc/../tmp"}`, BackendRunit, "", "clean absolute path"},
		{"bad allow-list entry", `{"services":["ok","a;b"]}`, BackendRunit, "", `services[1]: "a;b" is not a service name`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var cfg Config
			err := plugins.DecodeConfig(Name, json.RawMessage(tc.config), &cfg)
			var s *Service
			if err == nil {
				s, err = newService(cfg, tc.detected, command.Run)
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := s.backend.name(); got != tc.wantBackend {
				t.Fatalf("backend = %s, want %s", got, tc.wantBackend)
			}
		})
	}
}

func TestDetect(t *testing.T) {
	dir := t.TempDir()
	if got := detect(dir, []string{"PATH=" + t.TempDir()}); got != BackendSystemd {
		t.Errorf("with the marker directory: %q, want systemd", got)
	}
	missing := dir + "/nope"
	if got := detect(missing, []string{"PATH=" + t.TempDir()}); got != "" {
		t.Errorf("with neither: %q, want none", got)
	}
	if got := detect(missing, command.DefaultEnv); got != BackendRunit {
		t.Skipf("sv is not installed in the default PATH (install runit): detect = %q", got)
	}
}

func TestRegistered(t *testing.T) {
	info, ok := plugins.Lookup(Name)
	if !ok {
		t.Fatal("service plugin not registered")
	}
	if _, err := info.New(json.RawMessage(`{"backend":"systemd","services":["nginx"]}`)); err != nil {
		t.Fatal(err)
	}
	ddl := (&Service{}).Describe()
	if got := strings.Join(ddl.ActionNames(), ","); got != "reload,restart,start,status,stop" {
		t.Fatalf("actions = %s", got)
	}
}
