package all

import (
	"testing"

	"github.com/signetbus/signet/plugins"
)

// TestWhitelist checks that every plugin on the whitelist is registered and
// declares a usable DDL: named actions, known input types, patterns that
// compile and defaults that pass their own rules.
func TestWhitelist(t *testing.T) {
	want := []string{"haproxy", "health", "maintenance", "package", "reboot", "service"}
	got := plugins.Names()
	if len(got) != len(want) {
		t.Fatalf("registered %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("registered %v, want %v", got, want)
		}
	}
	configs := map[string]string{
		"service":     `{"backend":"runit","service_dir":"/etc/service"}`,
		"package":     `{"backend":"apt"}`,
		"maintenance": `{"backends":[{"alertmanager":{"url":"http://127.0.0.1:9093"}}]}`,
	}
	for _, name := range want {
		info, _ := plugins.Lookup(name)
		var raw []byte
		if c, ok := configs[name]; ok {
			raw = []byte(c)
		}
		p, err := info.New(raw)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		d := p.Describe()
		if err := d.Check(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		if d.Name != name || d.Description == "" || len(d.Actions) == 0 {
			t.Errorf("%s: DDL name %q, description %q, %d actions", name, d.Name, d.Description, len(d.Actions))
		}
		for _, a := range d.Actions {
			if a.Description == "" {
				t.Errorf("%s.%s has no description", name, a.Name)
			}
			defaults := map[string]any{}
			for _, in := range a.Inputs {
				if in.Required {
					continue
				}
				if in.Default != nil {
					defaults[in.Name] = in.Default
				}
			}
			for _, in := range a.Inputs {
				if in.Required {
					// Fill required inputs with nothing: Validate must say so, not crash.
					if _, err := a.Validate(map[string]any{}); err == nil {
						t.Errorf("%s.%s: missing required %s accepted", name, a.Name, in.Name)
					}
					defaults = nil
					break
				}
			}
			if defaults != nil {
				if _, err := a.Validate(map[string]any{}); err != nil {
					t.Errorf("%s.%s: its own defaults do not validate: %v", name, a.Name, err)
				}
			}
		}
	}
}
