// Package yamlerr turns the errors of go.yaml.in/yaml/v3 into messages in
// the words of the file's author: "policy.yaml:3: rules[1].alow: unknown
// key", never "field alow not found in type policy.ruleSpec". Every
// config loader (signetd.yaml, the client config, the policy, app files)
// can pass its decode error through Explain.
package yamlerr

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/signetbus/signet/internal/lazyre"
)

var (
	lineRe    = lazyre.New(`^line (\d+): (.*)$`)
	unknownRe = lazyre.New(`^field (\S+) not found in type \S+$`)
	typeRe    = lazyre.New("^cannot unmarshal !!(\\w+) (?:`(.*)` )?into (\\S+)$")
	syntaxRe  = lazyre.New(`^yaml: line (\d+): (.*)$`)
)

// Explain rewrites err, returned by decoding data, as one line per
// problem: "FILE:LINE: KEY: what is wrong" ("line LINE: ..." when file is
// ""). Errors that are not yaml's
// are returned unchanged.
func Explain(file string, data []byte, err error) error {
	if err == nil {
		return nil
	}
	var te *yaml.TypeError
	if errors.As(err, &te) {
		var root yaml.Node
		_ = yaml.Unmarshal(data, &root)
		msgs := make([]string, 0, len(te.Errors))
		for _, e := range te.Errors {
			msgs = append(msgs, explainOne(file, &root, e))
		}
		return errors.New(strings.Join(msgs, "\n"))
	}
	if m := syntaxRe.FindStringSubmatch(err.Error()); m != nil {
		n, _ := strconv.Atoi(m[1])
		f, _ := at(file, n)
		return fmt.Errorf("%s%d: not valid YAML: %s", f, n, m[2])
	}
	return err
}

func explainOne(file string, root *yaml.Node, e string) string {
	m := lineRe.FindStringSubmatch(e)
	if m == nil {
		return file + ": " + e
	}
	line, _ := strconv.Atoi(m[1])
	what := m[2]
	file, line = at(file, line)
	if u := unknownRe.FindStringSubmatch(what); u != nil {
		path := KeyAt(root, line, u[1])
		return fmt.Sprintf("%s%d: %s: unknown key (check its spelling and indentation)", file, line, path)
	}
	if t := typeRe.FindStringSubmatch(what); t != nil {
		path := KeyAt(root, line, "")
		return fmt.Sprintf("%s%d: %s: %s, want %s", file, line, path, describe(t[1], t[2]), want(t[3]))
	}
	return fmt.Sprintf("%s%d: %s", file, line, what)
}

// at returns the prefix before a line number: "FILE:" or, without a
// file name, "line ".
func at(file string, line int) (string, int) {
	if file == "" {
		return "line ", line
	}
	return file + ":", line
}

// describe says what the author wrote: `"ci" is a string`.
func describe(tag, value string) string {
	kind := map[string]string{"str": "a string", "int": "a number", "float": "a number", "bool": "true or false",
		"seq": "a list", "map": "a mapping", "null": "empty", "timestamp": "a date"}[tag]
	if kind == "" {
		kind = "a " + tag
	}
	// yaml.v3 shortens long values to their first bytes and "...".
	if value == "" || strings.HasSuffix(value, "...") || tag == "seq" || tag == "map" {
		return "found " + kind
	}
	return fmt.Sprintf("%q is %s", value, kind)
}

// want names a Go type the way a YAML author thinks of it.
func want(goType string) string {
	switch {
	case strings.HasPrefix(goType, "[]"):
		return "a list"
	case strings.HasPrefix(goType, "map["):
		return "a mapping of keys"
	case goType == "string":
		return "a string"
	case goType == "bool":
		return "true or false"
	case strings.HasPrefix(goType, "int"), strings.HasPrefix(goType, "uint"):
		return "a whole number"
	case strings.HasPrefix(goType, "float"):
		return "a number"
	case goType == "time.Duration":
		return `a duration such as "30s"`
	}
	// A named type from some package: a section of keys.
	return "a mapping of keys"
}

// KeyAt returns the path ("rules[2].allow") of the key on line whose name
// is key, or, when key is "", of the key whose value starts on line. It
// returns "(top level)" when nothing matches.
func KeyAt(root *yaml.Node, line int, key string) string {
	if p, ok := find(root, line, key, ""); ok {
		return p
	}
	if key != "" {
		return key
	}
	return "(top level)"
}

func find(n *yaml.Node, line int, key, path string) (string, bool) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			if p, ok := find(c, line, key, path); ok {
				return p, true
			}
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := k.Value
			if path != "" {
				p = path + "." + k.Value
			}
			if key != "" && k.Line == line && k.Value == key {
				return p, true
			}
			if key == "" && v.Line == line && (v.Kind == yaml.ScalarNode || v.Style&yaml.FlowStyle != 0 || k.Line == line) {
				return p, true
			}
			if r, ok := find(v, line, key, p); ok {
				return r, true
			}
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i+1)
			if key == "" && c.Kind == yaml.ScalarNode && c.Line == line {
				return p, true
			}
			if r, ok := find(c, line, key, p); ok {
				return r, true
			}
		}
	}
	return "", false
}

var (
	jsonUnknownRe = lazyre.New(`json: unknown field "([^"]+)"`)
	jsonTypeRe    = lazyre.New(`json: cannot unmarshal (\w+) into Go (?:struct field \S*?\.?([\w.]+)|value) of type (\S+)`)
	pluginPrefix  = lazyre.New(`^plugin \S+: config: `)
)

// Section explains an error from decoding a YAML section that was
// converted to JSON (a plugin's config): the JSON decoder knows neither
// the line nor the YAML key path, so both are found again in section.
// prefix is the section's path ("plugins.service"), file the file it is
// in ("" when unknown). Errors that are not the JSON decoder's are
// returned unchanged.
func Section(file string, section *yaml.Node, prefix string, err error) error {
	if err == nil {
		return nil
	}
	msg := pluginPrefix.ReplaceAllString(err.Error(), "")
	if m := jsonUnknownRe.FindStringSubmatch(msg); m != nil {
		line, path := findKey(section, m[1], prefix)
		f, line := at(file, line)
		return fmt.Errorf("%s%d: %s: unknown key (check its spelling and indentation)", f, line, path)
	}
	if m := jsonTypeRe.FindStringSubmatch(msg); m != nil {
		field := m[2]
		line, path := section.Line, prefix
		if field != "" {
			parts := strings.Split(field, ".")
			line, path = findKey(section, parts[len(parts)-1], prefix)
		}
		f, line := at(file, line)
		return fmt.Errorf("%s%d: %s: found %s, want %s", f, line, path, jsonKind(m[1]), want(m[3]))
	}
	return err
}

func jsonKind(k string) string {
	switch k {
	case "string":
		return "a string"
	case "number":
		return "a number"
	case "bool":
		return "true or false"
	case "array":
		return "a list"
	case "object":
		return "a mapping"
	}
	return k
}

// findKey returns the line and path of the first key named key under n
// (depth first), or n's own line and prefix.
func findKey(n *yaml.Node, key, prefix string) (int, string) {
	if n == nil {
		return 0, prefix
	}
	var walk func(n *yaml.Node, path string) (int, string, bool)
	walk = func(n *yaml.Node, path string) (int, string, bool) {
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				if l, p, ok := walk(c, path); ok {
					return l, p, true
				}
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k := n.Content[i]
				if k.Value == key {
					return k.Line, path + "." + k.Value, true
				}
			}
			for i := 0; i+1 < len(n.Content); i += 2 {
				if l, p, ok := walk(n.Content[i+1], path+"."+n.Content[i].Value); ok {
					return l, p, true
				}
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				if l, p, ok := walk(c, fmt.Sprintf("%s[%d]", path, i+1)); ok {
					return l, p, true
				}
			}
		}
		return 0, "", false
	}
	if l, p, ok := walk(n, prefix); ok {
		return l, p
	}
	return n.Line, prefix
}
