package deploy

import (
	"strings"
	"testing"
	"time"
)

func TestAppForEnv(t *testing.T) {
	a := newApp(t)
	prod, err := a.ForEnv("prod")
	if err != nil {
		t.Fatal(err)
	}
	if prod.OnFailure != "hold" || prod.HAProxy.Server != "{{identity}}" || prod.Health.Contains != "{{version}}" || prod.Maintenance != 30*time.Minute || prod.ZoneFact != "zone" {
		t.Errorf("prod defaults = %+v", prod)
	}
	dev, err := a.ForEnv("dev")
	if err != nil || dev.OnFailure != "rollback" || dev.BatchSize != "3" {
		t.Errorf("dev = %+v, %v; want rollback override, batch size kept", dev, err)
	}
	if _, err := a.ForEnv("Prod;x"); err == nil {
		t.Error("bad env accepted")
	}
}

func TestParseAppRejects(t *testing.T) {
	tests := []struct{ name, from, to, want string }{
		{"unknown key", "on_failure: hold", "on_failure: hold\ncolour: red", "colour: unknown key"},
		{"version", "version: 1", "version: 3", "version: want 1, found 3"},
		{"name", "name: middleware", "name: Middle Ware", "name: want lowercase"},
		{"package", "package: app", "package: -app", "package: want a package name"},
		{"service", "service: app", "service: 'app;reboot'", "service: want a service name"},
		{"hosts missing", "hosts: [role=app]", "hosts: []", "hosts: at least one"},
		{"hosts shell", "hosts: [role=app]", "hosts: ['role=$(x)']", "want fact=value"},
		{"backend", "backend: middleware", "backend: ''", "haproxy.backend"},
		{"server", "lb_filter: [lb=prod]", "lb_filter: [lb=prod]\n  server: 'a b'", "haproxy.server"},
		{"lb filter", "lb_filter: [lb=prod]", "lb_filter: []", "haproxy.lb_filter"},
		{"url scheme", "url: http://127.0.0.1:8080/version", "url: file:///etc/passwd", "health.url"},
		{"url creds", "url: http://127.0.0.1:8080/version", "url: http://u:p@127.0.0.1/", "health.url"},
		{"url template", "url: http://127.0.0.1:8080/version", "url: http://{{secret}}/", "health.url"},
		{"status", "url: http://127.0.0.1:8080/version", "url: http://127.0.0.1:8080/version\n  status: 42", "health.status"},
		{"batch", `batch_size: "3"`, `batch_size: "0"`, "batch_size"},
		{"policy", "on_failure: hold", "on_failure: pray", "on_failure"},
		{"env override", "on_failure: rollback", "on_failure: pray", "envs.dev"},
		{"env name", "  dev:\n", "  Dev:\n", "env name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			y := strings.Replace(appYAML, tt.from, tt.to, 1)
			if y == appYAML {
				t.Fatalf("replacement %q not found", tt.from)
			}
			_, err := ParseApp(strings.NewReader(y))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}
