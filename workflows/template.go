package workflows

import (
	"fmt"
	"sort"

	"github.com/signetbus/signet/internal/lazyre"
)

var varRef = lazyre.New(`\{\{\s*([A-Za-z0-9_.-]*)\s*\}\}`)

// Expand replaces every {{name}} in s with vars[name]. A reference to a
// variable that is not set is an error: a typo must not turn into an empty
// package version on a production host.
func Expand(s string, vars map[string]string) (string, error) {
	var missing string
	out := varRef.ReplaceAllStringFunc(s, func(m string) string {
		name := varRef.FindStringSubmatch(m)[1]
		v, ok := vars[name]
		if !ok && missing == "" {
			missing = name
		}
		return v
	})
	if missing != "" {
		return "", fmt.Errorf("template %q: variable %q is not set (set: %s)", s, missing, varNames(vars))
	}
	return out, nil
}

func varNames(vars map[string]string) string {
	names := make([]string, 0, len(vars))
	for k := range vars {
		names = append(names, k)
	}
	sort.Strings(names)
	return fmt.Sprint(names)
}

// expandValue expands the strings inside a YAML-shaped value: strings,
// lists and maps; other scalars are returned as they are.
func expandValue(v any, vars map[string]string) (any, error) {
	switch v := v.(type) {
	case string:
		return Expand(v, vars)
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			x, err := expandValue(e, vars)
			if err != nil {
				return nil, err
			}
			out[i] = x
		}
		return out, nil
	case map[string]any:
		return expandMap(v, vars)
	default:
		return v, nil
	}
}

func expandMap(m map[string]any, vars map[string]string) (map[string]any, error) {
	if m == nil {
		return nil, nil
	}
	out := make(map[string]any, len(m))
	for k, v := range m {
		x, err := expandValue(v, vars)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", k, err)
		}
		out[k] = x
	}
	return out, nil
}

func expandList(l []string, vars map[string]string) ([]string, error) {
	out := make([]string, len(l))
	for i, s := range l {
		x, err := Expand(s, vars)
		if err != nil {
			return nil, err
		}
		out[i] = x
	}
	return out, nil
}
