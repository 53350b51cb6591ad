package plugins

import (
	"errors"
	"strings"
	"testing"
)

// TestSensitiveValidation: no validation error of a sensitive input (or of
// one whose name looks secret) quotes the value, each still names the rule;
// other inputs quote it, bounded and without URL credentials.
func TestSensitiveValidation(t *testing.T) {
	a := Action{Name: "login", Inputs: []Input{
		{Name: "phrase", Type: TypeString, Sensitive: true, Pattern: `[a-z]{12,}`},
		{Name: "api_key", Type: TypeString, Enum: []string{"k1", "k2"}},
		{Name: "pin", Type: TypeInteger, Sensitive: true, Max: Float(9999)},
		{Name: "ratio", Type: TypeNumber, Sensitive: true},
		{Name: "on", Type: TypeBoolean, Sensitive: true},
		{Name: "hold", Type: TypeDuration, Sensitive: true, Min: Float(60)},
		{Name: "note", Type: TypeString, Pattern: `[a-z]*`},
	}}
	cases := []struct {
		params map[string]any
		secret string
		rule   string
	}{
		{map[string]any{"phrase": "Hunter2 hunter2"}, "Hunter2", "pattern"},
		{map[string]any{"api_key": "AKIAXYZ"}, "AKIAXYZ", "enum"},
		{map[string]any{"pin": "12x34"}, "12x34", "type"},
		{map[string]any{"pin": 31337}, "31337", "max"},
		{map[string]any{"pin": 1.5}, "1.5", "type"},
		{map[string]any{"ratio": "s3cr3t"}, "s3cr3t", "type"},
		{map[string]any{"on": "s3cr3t"}, "s3cr3t", "type"},
		{map[string]any{"hold": "s3cr3t"}, "s3cr3t", "type"},
		{map[string]any{"hold": "59s"}, "59s", "min"},
	}
	for _, c := range cases {
		_, err := a.Validate(c.params)
		var pe *ParamError
		if !errors.As(err, &pe) || pe.Rule != c.rule {
			t.Errorf("%v: want a %s error, got %v", c.params, c.rule, err)
			continue
		}
		if strings.Contains(err.Error(), c.secret) {
			t.Errorf("%v: the error echoes the secret: %v", c.params, err)
		}
		if !strings.Contains(err.Error(), "not shown") {
			t.Errorf("%v: the error should say the value is not shown: %v", c.params, err)
		}
	}

	_, err := a.Validate(map[string]any{"note": "https://u:pw@h/p?token=t0k " + strings.Repeat("x", 200)})
	if err == nil || strings.Contains(err.Error(), "pw@") || strings.Contains(err.Error(), "t0k") || len(err.Error()) > 200 {
		t.Errorf("a non-sensitive value must be shown bounded and without credentials: %v", err)
	}
	if !strings.Contains(err.Error(), "(227 bytes)") {
		t.Errorf("a cut value should say its length: %v", err)
	}
}

func TestCheckRefusesSensitiveDefault(t *testing.T) {
	d := DDL{Name: "vault", Actions: []Action{{Name: "login", Inputs: []Input{
		{Name: "phrase", Type: TypeString, Sensitive: true, Default: "hunter2"},
	}}}}
	err := d.Check()
	if err == nil || !strings.Contains(err.Error(), "sensitive and must not have a default") || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("want a refusal that does not quote the default, got %v", err)
	}
	d.Actions[0].Inputs[0].Default = nil
	if err := d.Check(); err != nil {
		t.Fatal(err)
	}
}
