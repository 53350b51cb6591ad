package plugins

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/signetbus/signet/internal/grammar"
	"github.com/signetbus/signet/internal/redact"
)

// Input types.
const (
	TypeString   = "string"
	TypeInteger  = "integer"
	TypeNumber   = "number"
	TypeBoolean  = "boolean"
	TypeDuration = "duration" // a Go duration string such as "90s"; passed to Run as a string
)

// DDL declares what a plugin offers.
type DDL struct {
	Name        string   `json:"name"`
	Description string   `json:"description"`
	Actions     []Action `json:"actions"`
}

// Action declares one action of a plugin.
type Action struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	// Inputs are the parameters the action takes. Any other parameter is refused.
	Inputs []Input `json:"inputs,omitempty"`
	// Outputs describe the keys of Result.Data.
	Outputs []Output `json:"outputs,omitempty"`
	// Timeout bounds the action when the host config sets none. Zero means
	// the host's default action timeout.
	Timeout time.Duration `json:"timeout,omitempty"`
}

// Input declares one parameter.
type Input struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	Type        string `json:"type"`
	Required    bool   `json:"required,omitempty"`
	// Pattern is a regular expression the whole value must match (strings).
	Pattern string `json:"pattern,omitempty"`
	// Enum lists the allowed values (strings).
	Enum []string `json:"enum,omitempty"`
	// Min and Max bound numbers and integers, and durations in seconds.
	Min *float64 `json:"min,omitempty"`
	Max *float64 `json:"max,omitempty"`
	// MaxLength bounds strings, in bytes. Zero means 1024.
	MaxLength int `json:"max_length,omitempty"`
	// Default is used when the parameter is absent. A sensitive input
	// has none.
	Default any `json:"default,omitempty"`
	// Sensitive marks a secret (a password, a token, an API key): signetd
	// never echoes its value in a validation error, a reply, the audit log
	// or its logs, and removes the value wherever a plugin's error,
	// summary, data or log lines quote it. Inputs whose names look secret
	// (redact.SecretName: password, token, api_key...) are treated the
	// same even when not marked, as a second line of defence.
	Sensitive bool `json:"sensitive,omitempty"`
}

// Output declares one key of Result.Data.
type Output struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	Type        string `json:"type"`
}

// Params are an action's parameters after validation: string, int64,
// float64 or bool values.
type Params map[string]any

// String returns a string parameter, or "" when absent.
func (p Params) String(name string) string {
	s, _ := p[name].(string)
	return s
}

// Int returns an integer parameter, or 0 when absent.
func (p Params) Int(name string) int64 {
	n, _ := p[name].(int64)
	return n
}

// Float returns a number parameter, or 0 when absent.
func (p Params) Float(name string) float64 {
	f, _ := p[name].(float64)
	return f
}

// Bool returns a boolean parameter, or false when absent.
func (p Params) Bool(name string) bool {
	b, _ := p[name].(bool)
	return b
}

// Duration returns a duration parameter, or 0 when absent.
func (p Params) Duration(name string) time.Duration {
	d, _ := time.ParseDuration(p.String(name))
	return d
}

// Has reports whether the parameter is present.
func (p Params) Has(name string) bool { _, ok := p[name]; return ok }

// ParamError says which parameter broke which rule.
type ParamError struct {
	Action string
	Param  string
	Rule   string // "required", "unknown", "type", "pattern", "enum", "min", "max", "max_length", or a plugin's own
	Msg    string
}

func (e *ParamError) Error() string {
	return fmt.Sprintf("invalid parameter %q for %s: %s", e.Param, e.Action, e.Msg)
}

// Action returns the named action.
func (d DDL) Action(name string) (Action, bool) {
	for _, a := range d.Actions {
		if a.Name == name {
			return a, true
		}
	}
	return Action{}, false
}

// ActionNames returns the action names, sorted.
func (d DDL) ActionNames() []string {
	names := make([]string, len(d.Actions))
	for i, a := range d.Actions {
		names[i] = a.Name
	}
	sort.Strings(names)
	return names
}

const defaultMaxLength = 1024

var patternCache sync.Map

// Validate checks raw parameters (as decoded from JSON, or strings from the
// command line) against the declaration, and returns them coerced to their
// declared types with defaults filled in. Unknown parameters are refused.
func (a Action) Validate(raw map[string]any) (Params, error) {
	out := Params{}
	known := map[string]bool{}
	for _, in := range a.Inputs {
		known[in.Name] = true
	}
	names := make([]string, 0, len(raw))
	for k := range raw {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		if !known[k] {
			return nil, &ParamError{Action: a.Name, Param: k, Rule: "unknown",
				Msg: fmt.Sprintf("unknown parameter (accepted: %s)", strings.Join(a.inputNames(), ", "))}
		}
	}
	for _, in := range a.Inputs {
		v, ok := raw[in.Name]
		if !ok || v == nil {
			if in.Required {
				return nil, &ParamError{Action: a.Name, Param: in.Name, Rule: "required", Msg: "required parameter is missing"}
			}
			if in.Default == nil {
				continue
			}
			v = in.Default
		}
		cv, err := in.coerce(v)
		if err != nil && in.secret() {
			err = in.hidden(err)
		}
		if err != nil {
			return nil, &ParamError{Action: a.Name, Param: in.Name, Rule: "type", Msg: err.Error()}
		}
		if perr := in.check(cv); perr != nil {
			perr.Action, perr.Param = a.Name, in.Name
			return nil, perr
		}
		out[in.Name] = cv
	}
	return out, nil
}

func (a Action) inputNames() []string {
	if len(a.Inputs) == 0 {
		return []string{"none"}
	}
	n := make([]string, len(a.Inputs))
	for i, in := range a.Inputs {
		n[i] = in.Name
	}
	return n
}

// secret reports whether the input's value must never be echoed: it is
// declared sensitive, or its name looks secret.
func (in Input) secret() bool { return in.Sensitive || redact.SecretName(in.Name) }

// hidden is a coerce error of a secret input: it says what was wanted,
// never what was got.
func (in Input) hidden(err error) error {
	msg, _, _ := strings.Cut(err.Error(), ", got")
	return errors.New(msg + " (value not shown: the input is sensitive)")
}

// Quote quotes a rejected value for an error message: bounded to 64 bytes
// (with its full length said) and with credentials removed (redact.String).
// Validators use it for the values of inputs that are not sensitive; the
// value of a sensitive input is never shown at all.
func Quote(s string) string { return show(s) }

func show(s string) string {
	const max = 64
	r := redact.String(s)
	if len(r) > max {
		cut := max
		for cut > 0 && !utf8.RuneStart(r[cut]) {
			cut--
		}
		return fmt.Sprintf("%q... (%d bytes)", r[:cut], len(s))
	}
	return strconv.Quote(r)
}

func (in Input) coerce(v any) (any, error) {
	switch in.Type {
	case TypeString, TypeDuration, "":
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("want a %s, got %s", typeName(in.Type), describe(v))
		}
		if in.Type == TypeDuration {
			if _, err := time.ParseDuration(s); err != nil {
				return nil, fmt.Errorf("want a duration such as 90s or 5m, got %s", show(s))
			}
		}
		return s, nil
	case TypeInteger:
		switch x := v.(type) {
		case string:
			n, err := strconv.ParseInt(x, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("want an integer, got %s", show(x))
			}
			return n, nil
		case float64:
			if x != math.Trunc(x) || math.Abs(x) > 1<<53 {
				return nil, fmt.Errorf("want an integer, got %v", x)
			}
			return int64(x), nil
		case json.Number:
			n, err := x.Int64()
			if err != nil {
				return nil, fmt.Errorf("want an integer, got %s", show(x.String()))
			}
			return n, nil
		case int:
			return int64(x), nil
		case int64:
			return x, nil
		}
	case TypeNumber:
		switch x := v.(type) {
		case string:
			f, err := strconv.ParseFloat(x, 64)
			if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
				return nil, fmt.Errorf("want a number, got %s", show(x))
			}
			return f, nil
		case float64:
			return x, nil
		case json.Number:
			f, err := x.Float64()
			if err != nil {
				return nil, fmt.Errorf("want a number, got %s", show(x.String()))
			}
			return f, nil
		case int:
			return float64(x), nil
		case int64:
			return float64(x), nil
		}
	case TypeBoolean:
		switch x := v.(type) {
		case bool:
			return x, nil
		case string:
			b, err := strconv.ParseBool(x)
			if err != nil {
				return nil, fmt.Errorf("want true or false, got %s", show(x))
			}
			return b, nil
		}
	default:
		return nil, fmt.Errorf("declared with unknown type %q", in.Type)
	}
	return nil, fmt.Errorf("want a %s, got %s", typeName(in.Type), describe(v))
}

func (in Input) check(v any) *ParamError {
	switch x := v.(type) {
	case string:
		max := in.MaxLength
		if max == 0 {
			max = defaultMaxLength
		}
		if len(x) > max {
			return &ParamError{Rule: "max_length", Msg: fmt.Sprintf("longer than %d bytes", max)}
		}
		if !utf8.ValidString(x) || strings.ContainsRune(x, 0) {
			return &ParamError{Rule: "type", Msg: "not valid UTF-8 text"}
		}
		if len(in.Enum) > 0 {
			found := false
			for _, e := range in.Enum {
				if e == x {
					found = true
					break
				}
			}
			if !found {
				if in.secret() {
					return &ParamError{Rule: "enum", Msg: "the value (not shown: the input is sensitive) is not one of the allowed values"}
				}
				return &ParamError{Rule: "enum", Msg: fmt.Sprintf("%s is not one of %s", show(x), strings.Join(in.Enum, ", "))}
			}
		}
		if in.Pattern != "" {
			re, err := compilePattern(in.Pattern)
			if err != nil {
				return &ParamError{Rule: "pattern", Msg: fmt.Sprintf("declared pattern does not compile: %v", err)}
			}
			if !re.MatchString(x) {
				if in.secret() {
					return &ParamError{Rule: "pattern", Msg: fmt.Sprintf("the value (not shown: the input is sensitive) does not match %s", in.Pattern)}
				}
				return &ParamError{Rule: "pattern", Msg: fmt.Sprintf("%s does not match %s", show(x), in.Pattern)}
			}
		}
		if in.Type == TypeDuration {
			d, _ := time.ParseDuration(x)
			return in.checkRange(d.Seconds(), x)
		}
	case int64:
		return in.checkRange(float64(x), strconv.FormatInt(x, 10))
	case float64:
		return in.checkRange(x, strconv.FormatFloat(x, 'g', -1, 64))
	}
	return nil
}

func (in Input) checkRange(f float64, shown string) *ParamError {
	if in.secret() {
		shown = "the value (not shown: the input is sensitive)"
	}
	unit := ""
	if in.Type == TypeDuration {
		unit = "s"
	}
	if in.Min != nil && f < *in.Min {
		return &ParamError{Rule: "min", Msg: fmt.Sprintf("%s is below the minimum %v%s", shown, *in.Min, unit)}
	}
	if in.Max != nil && f > *in.Max {
		return &ParamError{Rule: "max", Msg: fmt.Sprintf("%s is above the maximum %v%s", shown, *in.Max, unit)}
	}
	return nil
}

// Float is a helper for declaring Min and Max.
func Float(f float64) *float64 { return &f }

func compilePattern(p string) (*regexp.Regexp, error) {
	if re, ok := patternCache.Load(p); ok {
		return re.(*regexp.Regexp), nil
	}
	re, err := regexp.Compile(`\A(?:` + p + `)\z`)
	if err != nil {
		return nil, err
	}
	patternCache.Store(p, re)
	return re, nil
}

func typeName(t string) string {
	if t == "" {
		return TypeString
	}
	return t
}

func describe(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case float64, int, int64, json.Number:
		return "a number"
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

// Check reports a declaration that cannot work: bad names, duplicate
// actions or inputs, unknown types, patterns that do not compile, and
// defaults that break their own rules. signetd checks every enabled plugin
// at start-up.
func (d DDL) Check() error {
	if err := grammar.CheckName("plugin", d.Name); err != nil {
		return fmt.Errorf("ddl: %w", err)
	}
	seen := map[string]bool{}
	for _, a := range d.Actions {
		if err := grammar.CheckName("action", a.Name); err != nil {
			return fmt.Errorf("ddl %s: %w", d.Name, err)
		}
		if seen[a.Name] {
			return fmt.Errorf("ddl %s: duplicate action %q", d.Name, a.Name)
		}
		seen[a.Name] = true
		inputs := map[string]bool{}
		for _, in := range a.Inputs {
			if err := grammar.CheckName("input", in.Name); err != nil {
				return fmt.Errorf("ddl %s.%s: %w", d.Name, a.Name, err)
			}
			if inputs[in.Name] {
				return fmt.Errorf("ddl %s.%s: duplicate input %q", d.Name, a.Name, in.Name)
			}
			inputs[in.Name] = true
			switch in.Type {
			case TypeString, TypeInteger, TypeNumber, TypeBoolean, TypeDuration:
			default:
				return fmt.Errorf("ddl %s.%s: input %s has unknown type %q", d.Name, a.Name, in.Name, in.Type)
			}
			if in.Pattern != "" {
				if _, err := compilePattern(in.Pattern); err != nil {
					return fmt.Errorf("ddl %s.%s: input %s: pattern: %w", d.Name, a.Name, in.Name, err)
				}
			}
			if in.Default != nil && in.secret() {
				return fmt.Errorf("ddl %s.%s: input %s is sensitive and must not have a default (a secret does not belong in a declaration)", d.Name, a.Name, in.Name)
			}
			if in.Default != nil {
				v, err := in.coerce(in.Default)
				if err == nil {
					if perr := in.check(v); perr != nil {
						err = perr
					}
				}
				if err != nil {
					return fmt.Errorf("ddl %s.%s: input %s: default %v: %v", d.Name, a.Name, in.Name, in.Default, err)
				}
			}
		}
	}
	return nil
}
