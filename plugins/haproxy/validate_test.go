package haproxy

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/signetbus/signet/plugins"
)

func TestCheckName(t *testing.T) {
	ok := []string{"app", "web3", "web3.example.com", "be_app-2", "ipv6:ab", "A", "9lives", strings.Repeat("a", 100)}
	for _, n := range ok {
		if err := CheckName("server", n); err != nil {
			t.Errorf("CheckName(%q) = %v, want nil", n, err)
		}
	}
	bad := []struct{ name, in, want string }{
		{"empty", "", "is empty"},
		{"newline", "web1\nset server app/web2 state maint", "newline"},
		{"carriage return", "web1\r", "newline"},
		{"semicolon", "web1;set server app/web2 state maint", "';'"},
		{"semicolon alone", ";", "';'"},
		{"space", "web 1", "space"},
		{"tab", "web\t1", "space"},
		{"slash", "app/web1", "'/'"},
		{"leading dash", "-web1", "starts with '-'"},
		{"too long", strings.Repeat("a", 101), "more than 100"},
		{"leading dot", ".web", "letters, digits"},
		{"leading underscore", "_web", "letters, digits"},
		{"nul", "web\x001", "letters, digits"},
		{"hash", "web#1", "letters, digits"},
		{"quote", "web'1", "letters, digits"},
		{"non-ascii", "wéb1", "letters, digits"},
		{"backslash", `web\1`, "letters, digits"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckName("server", tt.in)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("CheckName(%q) = %v, want an error containing %q", tt.in, err, tt.want)
			}
		})
	}
}

func newTestPlugin(t *testing.T, cfg string) *Haproxy {
	t.Helper()
	var raw json.RawMessage
	if cfg != "" {
		raw = json.RawMessage(cfg)
	}
	p, err := New(raw)
	if err != nil {
		t.Fatal(err)
	}
	return p.(*Haproxy)
}

func TestValidate(t *testing.T) {
	h := newTestPlugin(t, "")
	tests := []struct {
		name   string
		action string
		params plugins.Params
		param  string // "" means valid
	}{
		{"status no params", "status", plugins.Params{}, ""},
		{"status backend", "status", plugins.Params{"backend": "app"}, ""},
		{"drain ok", "drain", plugins.Params{"backend": "app", "server": "web2", "timeout": "90s", "wait": true}, ""},
		{"drain default server", "drain", plugins.Params{"backend": "app"}, ""},
		{"weight ok", "weight", plugins.Params{"backend": "app", "weight": int64(0)}, ""},
		{"drain without backend", "drain", plugins.Params{"server": "web2"}, "backend"},
		{"disable without backend", "disable", plugins.Params{}, "backend"},
		{"backend injection", "drain", plugins.Params{"backend": "app;shutdown sessions server app/web1"}, "backend"},
		{"server newline", "disable", plugins.Params{"backend": "app", "server": "web2\nset server app/web1 state maint"}, "server"},
		{"server slash", "enable", plugins.Params{"backend": "app", "server": "app/web2"}, "server"},
		{"server dash", "enable", plugins.Params{"backend": "app", "server": "-web2"}, "server"},
		{"status server space", "status", plugins.Params{"server": "web 2"}, "server"},
		{"server not a string", "drain", plugins.Params{"backend": "app", "server": int64(3)}, "server"},
		{"weight missing", "weight", plugins.Params{"backend": "app"}, "weight"},
		{"weight too big", "weight", plugins.Params{"backend": "app", "weight": int64(257)}, "weight"},
		{"weight negative", "weight", plugins.Params{"backend": "app", "weight": int64(-1)}, "weight"},
		{"drain timeout bad", "drain", plugins.Params{"backend": "app", "timeout": "soon"}, "timeout"},
		{"drain timeout too long", "drain", plugins.Params{"backend": "app", "timeout": "2h"}, "timeout"},
		{"enable timeout too long", "enable", plugins.Params{"backend": "app", "timeout": "31m"}, "timeout"},
		{"drain timeout too short", "drain", plugins.Params{"backend": "app", "timeout": "10ms"}, "timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := h.Validate(tt.action, tt.params)
			if tt.param == "" {
				if err != nil {
					t.Fatalf("Validate = %v, want nil", err)
				}
				return
			}
			var pe *plugins.ParamError
			if !errors.As(err, &pe) || pe.Param != tt.param {
				t.Fatalf("Validate = %v, want a ParamError for %q", err, tt.param)
			}
		})
	}
	if err := h.Validate("reload", plugins.Params{}); err == nil || !strings.Contains(err.Error(), "unknown action") {
		t.Errorf("unknown action: %v", err)
	}
}

// The DDL's own checks refuse the same names, before Validate runs.
func TestDDLRefusesNames(t *testing.T) {
	ddl := newTestPlugin(t, "").Describe()
	for _, name := range ddl.ActionNames() {
		a, _ := ddl.Action(name)
		for _, bad := range []string{"a;b", "a b", "a/b", "-a", "a\nb"} {
			raw := map[string]any{"backend": bad}
			if name == "weight" {
				raw["weight"] = float64(1)
			}
			if _, err := a.Validate(raw); err == nil {
				t.Errorf("%s: DDL accepted backend %q", name, bad)
			}
		}
	}
	drain, _ := ddl.Action("drain")
	p, err := drain.Validate(map[string]any{"backend": "app"})
	if err != nil {
		t.Fatal(err)
	}
	if p.String("timeout") != "1m0s" || p.Bool("wait") != true {
		t.Errorf("drain defaults = %v", p)
	}
}

// Run validates again: a caller that skips Validate still cannot inject.
func TestRunRevalidates(t *testing.T) {
	h := newTestPlugin(t, `{"instances":[{"name":"main","socket":"unix:/nonexistent/admin.sock"}]}`)
	_, err := h.Run(context.Background(), &plugins.Request{Action: "disable", Identity: "web1",
		Params: plugins.Params{"backend": "app", "server": "web1;set server app/web2 state maint"}})
	var pe *plugins.ParamError
	if !errors.As(err, &pe) || pe.Param != "server" {
		t.Fatalf("Run = %v, want a ParamError for server", err)
	}
	// The identity is the default server, so it is checked too.
	_, err = h.Run(context.Background(), &plugins.Request{Action: "drain", Identity: "web1;shutdown",
		Params: plugins.Params{"backend": "app"}})
	if err == nil || !strings.Contains(err.Error(), "pass server=") {
		t.Fatalf("Run with a bad identity = %v", err)
	}
}

func TestSocketRefusesUnsafeCommands(t *testing.T) {
	s := socket{network: "unix", address: "/nonexistent", timeout: 1}
	for _, cmd := range []string{"", "show stat; shutdown sessions server app/web1", "show stat\nshow info", "show\x00stat"} {
		if _, err := s.do(context.Background(), cmd); !errors.Is(err, ErrUnsafeCommand) {
			t.Errorf("do(%q) = %v, want ErrUnsafeCommand", cmd, err)
		}
	}
}

func TestNew(t *testing.T) {
	h := newTestPlugin(t, "")
	if len(h.instances) != 1 || h.instances[0].name != "main" || h.instances[0].sock.address != "/run/haproxy/admin.sock" ||
		h.instances[0].sock.timeout != DefaultSocketTimeout {
		t.Fatalf("default = %+v", h.instances[0])
	}
	h = newTestPlugin(t, `{"instances":[{"name":"main","socket":"unix:/run/haproxy/admin.sock"},{"name":"public","socket":"tcp:127.0.0.1:9999"}],"socket_timeout":"3s"}`)
	if len(h.instances) != 2 || h.instances[1].sock.network != "tcp" || h.instances[1].sock.address != "127.0.0.1:9999" || h.instances[1].sock.timeout.String() != "3s" {
		t.Fatalf("two instances = %+v %+v", h.instances[0], h.instances[1])
	}
	bad := []struct{ name, cfg, want string }{
		{"unknown key", `{"sockets":["unix:/x"]}`, "unknown field"},
		{"unknown instance key", `{"instances":[{"name":"a","socket":"unix:/x","level":"admin"}]}`, "unknown field"},
		{"empty list", `{"instances":[]}`, "want at least one"},
		{"no scheme", `{"instances":[{"name":"a","socket":"/run/haproxy/admin.sock"}]}`, "want unix:/path/to/admin.sock"},
		{"relative unix", `{"instances":[{"name":"a","socket":"unix:admin.sock"}]}`, "absolute path"},
		{"tcp without port", `{"instances":[{"name":"a","socket":"tcp:127.0.0.1"}]}`, "tcp:host:port"},
		{"tcp bad port", `{"instances":[{"name":"a","socket":"tcp:127.0.0.1:99999"}]}`, "port from 1 to 65535"},
		{"udp", `{"instances":[{"name":"a","socket":"udp:127.0.0.1:9"}]}`, "unix: or tcp:"},
		{"space in path", `{"instances":[{"name":"a","socket":"unix:/run/a b"}]}`, "spaces"},
		{"bad name", `{"instances":[{"name":"a b","socket":"unix:/x"}]}`, "name must be"},
		{"empty name", `{"instances":[{"name":"","socket":"unix:/x"}]}`, "name must be"},
		{"duplicate name", `{"instances":[{"name":"a","socket":"unix:/x"},{"name":"a","socket":"unix:/y"}]}`, "used twice"},
		{"duplicate socket", `{"instances":[{"name":"a","socket":"unix:/x"},{"name":"b","socket":"unix:/x"}]}`, "used by another"},
		{"bad timeout", `{"socket_timeout":"forever"}`, "socket_timeout"},
		{"tiny timeout", `{"socket_timeout":"1ms"}`, "socket_timeout"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(json.RawMessage(tt.cfg))
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "plugin haproxy: config") {
				t.Fatalf("New(%s) = %v, want an error containing %q", tt.cfg, err, tt.want)
			}
		})
	}
}

func TestRegistered(t *testing.T) {
	info, ok := plugins.Lookup("haproxy")
	if !ok {
		t.Fatal("haproxy is not registered")
	}
	p, err := info.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Describe().ActionNames(); strings.Join(got, ",") != "disable,drain,enable,status,weight" {
		t.Errorf("actions = %v", got)
	}
}
