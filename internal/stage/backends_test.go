package stage

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/signetbus/signet/plugins"
	"github.com/signetbus/signet/plugins/haproxy"
	"github.com/signetbus/signet/plugins/maintenance"
	"github.com/signetbus/signet/plugins/packages"
	"github.com/signetbus/signet/plugins/service"
)

// TestStartBackendsPluginConfigs: the plugin configs StartBackends hands
// out build the real plugins, and each reaches its backend: the first
// version installed, the app running under runit, the server UP in HAProxy,
// no maintenance in Alertmanager. There is no lab.
func TestStartBackendsPluginConfigs(t *testing.T) {
	for k, v := range Detect(false) {
		if !strings.HasPrefix(v, "real") {
			t.Skipf("real backend %s missing: %s", k, v)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := StartBackends(ctx, Options{Dir: t.TempDir(), Hosts: 1, App: "web", Versions: []string{"1.4.1", "1.4.2"}, AppCommand: testAppCommand(t)})
	if err != nil {
		t.Fatalf("StartBackends: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	if s.Lab != nil {
		t.Fatal("StartBackends started a lab")
	}
	cfgs, err := s.PluginConfigs("web1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.PluginConfigs("web2"); err == nil {
		t.Fatal("PluginConfigs(web2) of a one-host stage: want an error")
	}
	checks := []struct {
		name   string
		new    func([]byte) (plugins.Plugin, error)
		params map[string]any
		want   string
	}{
		{BackendPackage, func(b []byte) (plugins.Plugin, error) { return packages.New(b) }, map[string]any{"package": "web"}, "web 1.4.1 is installed"},
		{BackendService, func(b []byte) (plugins.Plugin, error) { return service.New(b) }, map[string]any{"service": "web"}, "running"},
		{BackendHAProxy, func(b []byte) (plugins.Plugin, error) { return haproxy.New(b) }, map[string]any{"backend": "web", "server": "web1"}, "web1"},
		{BackendMaintenance, func(b []byte) (plugins.Plugin, error) { return maintenance.New(b) }, map[string]any{}, "no signet maintenance for web1 (alertmanager)"},
	}
	for _, c := range checks {
		p, err := c.new(cfgs[c.name])
		if err != nil {
			t.Fatalf("%s config %s: %v", c.name, cfgs[c.name], err)
		}
		res, err := runAction(ctx, p, &plugins.Request{Action: "status", Identity: "web1", Caller: "test", Log: s.log}, c.params)
		if err != nil {
			t.Fatalf("%s status: %v", c.name, err)
		}
		if !strings.Contains(res.Summary, c.want) {
			t.Errorf("%s status: %q, want it to contain %q", c.name, res.Summary, c.want)
		}
	}
}

// TestStartBackendsNeedsRealBackends: a sandbox backend cannot be
// configured in a signetd.yaml, so StartBackends refuses and names it.
func TestStartBackendsNeedsRealBackends(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := StartBackends(ctx, Options{Dir: t.TempDir(), Hosts: 1, Sandbox: true})
	if err == nil {
		s.Stop()
		t.Fatal("StartBackends with sandbox backends: want an error")
	}
	for _, want := range []string{"package (sandbox", "service (sandbox", "not real here"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q: want it to contain %q", err, want)
		}
	}
}
