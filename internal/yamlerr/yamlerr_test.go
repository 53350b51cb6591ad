package yamlerr

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

type natsConfig struct {
	URLs []string `yaml:"urls"`
}

type config struct {
	Collective string            `yaml:"collective"`
	NATS       natsConfig        `yaml:"nats"`
	Workers    int               `yaml:"workers"`
	Facts      map[string]string `yaml:"facts"`
}

func decode(data string) error {
	dec := yaml.NewDecoder(bytes.NewReader([]byte(data)))
	dec.KnownFields(true)
	var c config
	return Explain("signetd.yaml", []byte(data), dec.Decode(&c))
}

func TestExplain(t *testing.T) {
	for _, tc := range []struct{ doc, want string }{
		{"collective: lab\nnats:\n  url: nats://x\n", `signetd.yaml:3: nats.url: unknown key`},
		{"nats: nats://x\n", `signetd.yaml:1: nats: "nats://x" is a string, want a mapping of keys`},
		{"nats:\n  urls: nats://x\n", `signetd.yaml:2: nats.urls: "nats://x" is a string, want a list`},
		{"workers: many\n", `signetd.yaml:1: workers: "many" is a string, want a whole number`},
		{"facts: [a, b]\n", `signetd.yaml:1: facts: found a list, want a mapping of keys`},
		{"collective: [\n", `signetd.yaml:1: not valid YAML`},
	} {
		err := decode(tc.doc)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q:\n got  %v\n want %s", tc.doc, err, tc.want)
			continue
		}
		if strings.Contains(err.Error(), "natsConfig") || strings.Contains(err.Error(), "yamlerr.") || strings.Contains(err.Error(), "!!") {
			t.Errorf("%q: Go or YAML type names leak: %v", tc.doc, err)
		}
	}
}

// A section converted to JSON gets its line and key path back.
func TestSection(t *testing.T) {
	doc := "plugins:\n  maintenance:\n    backends:\n      - alertmanager:\n          urll: http://x\n"
	var root yaml.Node
	if err := yaml.Unmarshal([]byte(doc), &root); err != nil {
		t.Fatal(err)
	}
	section := root.Content[0].Content[1].Content[1]
	err := Section("signetd.yaml", section, "plugins.maintenance", errors.New(`plugin maintenance: config: json: unknown field "urll"`))
	want := "signetd.yaml:5: plugins.maintenance.backends[1].alertmanager.urll: unknown key"
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("got  %v\nwant %s", err, want)
	}
	other := errors.New("plugin maintenance: backends: want at least one")
	if got := Section("signetd.yaml", section, "plugins.maintenance", other); got != other {
		t.Errorf("a plugin's own error changed: %v", got)
	}
}
