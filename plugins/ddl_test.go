package plugins

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

var testAction = Action{Name: "update", Inputs: []Input{
	{Name: "package", Type: TypeString, Required: true, Pattern: `[a-z0-9][a-z0-9+.-]*`, MaxLength: 64},
	{Name: "mode", Type: TypeString, Enum: []string{"fast", "safe"}, Default: "safe"},
	{Name: "retries", Type: TypeInteger, Min: Float(0), Max: Float(5)},
	{Name: "ratio", Type: TypeNumber, Min: Float(0), Max: Float(1)},
	{Name: "wait", Type: TypeBoolean},
	{Name: "timeout", Type: TypeDuration, Min: Float(1), Max: Float(600)},
}}

func TestValidateCoercesAndDefaults(t *testing.T) {
	p, err := testAction.Validate(map[string]any{"package": "nginx", "retries": "3", "ratio": json.Number("0.5"), "wait": "true", "timeout": "90s"})
	if err != nil {
		t.Fatal(err)
	}
	if p.String("package") != "nginx" || p.Int("retries") != 3 || p.Float("ratio") != 0.5 || !p.Bool("wait") ||
		p.Duration("timeout").Seconds() != 90 || p.String("mode") != "safe" {
		t.Fatalf("params %#v", p)
	}
	if p.Has("absent") {
		t.Fatal("Has reports an absent parameter")
	}
}

func TestValidateRejects(t *testing.T) {
	cases := []struct {
		name   string
		params map[string]any
		param  string
		rule   string
		msg    string
	}{
		{"missing", map[string]any{}, "package", "required", "required parameter is missing"},
		{"unknown", map[string]any{"package": "x", "force": "1"}, "force", "unknown", "unknown parameter (accepted: package, mode, retries, ratio, wait, timeout)"},
		{"shell metacharacters", map[string]any{"package": "nginx; rm -rf /"}, "package", "pattern", `"nginx; rm -rf /" does not match`},
		{"leading dash", map[string]any{"package": "-oAPT::Get=1"}, "package", "pattern", "does not match"},
		{"too long", map[string]any{"package": strings.Repeat("a", 65)}, "package", "max_length", "longer than 64 bytes"},
		{"enum", map[string]any{"package": "x", "mode": "yolo"}, "mode", "enum", `"yolo" is not one of fast, safe`},
		{"integer syntax", map[string]any{"package": "x", "retries": "3.5"}, "retries", "type", `want an integer, got "3.5"`},
		{"integer from float", map[string]any{"package": "x", "retries": 2.5}, "retries", "type", "want an integer, got 2.5"},
		{"above max", map[string]any{"package": "x", "retries": "6"}, "retries", "max", "6 is above the maximum 5"},
		{"below min", map[string]any{"package": "x", "ratio": "-1"}, "ratio", "min", "-1 is below the minimum 0"},
		{"not a number", map[string]any{"package": "x", "ratio": "NaN"}, "ratio", "type", `want a number, got "NaN"`},
		{"boolean", map[string]any{"package": "x", "wait": "maybe"}, "wait", "type", `want true or false, got "maybe"`},
		{"duration syntax", map[string]any{"package": "x", "timeout": "10"}, "timeout", "type", "want a duration"},
		{"duration above max", map[string]any{"package": "x", "timeout": "1h"}, "timeout", "max", "above the maximum 600s"},
		{"wrong JSON type", map[string]any{"package": 42.0}, "package", "type", "want a string, got a number"},
		{"object", map[string]any{"package": map[string]any{}}, "package", "type", "got an object"},
		{"NUL byte", map[string]any{"package": "a\x00b"}, "package", "type", "not valid UTF-8 text"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := testAction.Validate(c.params)
			var pe *ParamError
			if !errors.As(err, &pe) {
				t.Fatalf("err = %v, want *ParamError", err)
			}
			if pe.Param != c.param || pe.Rule != c.rule || !strings.Contains(pe.Error(), c.msg) {
				t.Fatalf("got param=%s rule=%s %q, want %s %s containing %q", pe.Param, pe.Rule, pe.Error(), c.param, c.rule, c.msg)
			}
		})
	}
}

func TestRegisterRefusesDuplicates(t *testing.T) {
	info := Info{Name: "test_dup_plugin", New: func(json.RawMessage) (Plugin, error) { return nil, nil }}
	Register(info)
	defer func() {
		if recover() == nil {
			t.Fatal("a duplicate registration did not panic")
		}
	}()
	Register(info)
}

func TestDecodeConfigIsStrict(t *testing.T) {
	var cfg struct {
		Socket string `json:"socket"`
	}
	if err := DecodeConfig("haproxy", json.RawMessage(`{"sokcet":"x"}`), &cfg); err == nil || !strings.Contains(err.Error(), `plugin haproxy: config: json: unknown field "sokcet"`) {
		t.Fatalf("err = %v", err)
	}
	if err := DecodeConfig("haproxy", nil, &cfg); err != nil {
		t.Fatal(err)
	}
}

func TestCheck(t *testing.T) {
	good := DDL{Name: "pkg", Actions: []Action{testAction}}
	if err := good.Check(); err != nil {
		t.Fatal(err)
	}
	bad := []DDL{
		{Name: "Bad Name"},
		{Name: "x", Actions: []Action{{Name: "a"}, {Name: "a"}}},
		{Name: "x", Actions: []Action{{Name: "a", Inputs: []Input{{Name: "p", Type: "list"}}}}},
		{Name: "x", Actions: []Action{{Name: "a", Inputs: []Input{{Name: "p", Type: TypeString, Pattern: "("}}}}},
		{Name: "x", Actions: []Action{{Name: "a", Inputs: []Input{{Name: "p", Type: TypeInteger, Max: Float(3), Default: int64(9)}}}}},
	}
	for i, d := range bad {
		if err := d.Check(); err == nil {
			t.Errorf("case %d: %+v passed Check", i, d)
		}
	}
}

type prepPlugin struct{ validated []string }

func (p *prepPlugin) Describe() DDL { return DDL{Name: "prep", Actions: []Action{testAction}} }
func (p *prepPlugin) Run(context.Context, *Request) (*Result, error) {
	return nil, nil
}
func (p *prepPlugin) Validate(action string, params Params) error {
	p.validated = append(p.validated, action)
	if params.String("package") == "forbidden" {
		return errors.New("forbidden by the plugin")
	}
	return nil
}

func TestPrepare(t *testing.T) {
	p := &prepPlugin{}
	params, err := Prepare(p, "update", map[string]any{"package": "nginx", "retries": "2"})
	if err != nil || params.Int("retries") != 2 || params.String("mode") != "safe" {
		t.Fatalf("%v %v", params, err)
	}
	var ua *UnknownActionError
	if _, err := Prepare(p, "reboot", nil); !errors.As(err, &ua) || err.Error() != `agent prep has no action "reboot" (actions: update)` {
		t.Fatalf("err = %v", err)
	}
	var pe *ParamError
	if _, err := Prepare(p, "update", map[string]any{"package": "a b"}); !errors.As(err, &pe) {
		t.Fatalf("err = %v", err)
	}
	if _, err := Prepare(p, "update", map[string]any{"package": "forbidden"}); err == nil || err.Error() != "forbidden by the plugin" {
		t.Fatalf("err = %v", err)
	}
	if len(p.validated) != 2 { // the DDL refusal never reached the plugin
		t.Fatalf("Validate called %d times, want 2", len(p.validated))
	}
}
