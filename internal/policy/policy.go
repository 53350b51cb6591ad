// Package policy decides which operator roles may run which actions on a
// host. A host denies everything no rule allows.
//
// The policy file is YAML:
//
//	rules:
//	  - name: ci-deploys-dev      # optional; default "ROLES:PATTERNS"
//	    roles: [ci]
//	    allow: ["package.*", "service.*", "rpcutil.ping"]
//	    where: ["env=dev"]        # optional; all must hold
//
// A rule allows a request when the caller holds at least one of its roles,
// one of its allow patterns matches AGENT.ACTION, and every where condition
// holds for this host's facts.
//
// An allow pattern is AGENT.ACTION where either part may be "*" (any agent,
// any action); "*" alone allows everything. Parts are otherwise literal:
// "pack*" is an error, not a prefix match.
//
// A where condition is one of
//
//	key=value    the fact equals value
//	key!=value   the fact exists and differs from value
//	key=~regex   the whole fact matches the RE2 regex (anchored at both ends)
//
// A condition on a fact the host does not have never holds, whatever its
// operator, so a missing fact can only deny.
package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/signetbus/signet/internal/grammar"
	"github.com/signetbus/signet/internal/lazyre"
	"github.com/signetbus/signet/internal/trustfile"
)

// Policy is a parsed policy file.
type Policy struct {
	rules []rule
}

// file is the YAML document.
type file struct {
	// Rules are checked in order; the first that allows wins.
	Rules []ruleSpec `yaml:"rules"`
}

// ruleSpec is one rule as written in the file.
type ruleSpec struct {
	// Name identifies the rule in decisions and audit records. Default:
	// the roles and patterns joined, "ci:package.*,service.*".
	Name string `yaml:"name"`
	// Roles the rule grants to; a caller needs any one of them. Required.
	Roles []string `yaml:"roles"`
	// Allow lists AGENT.ACTION patterns. Required.
	Allow []string `yaml:"allow"`
	// Where lists fact conditions that must all hold. Optional.
	Where []string `yaml:"where"`
}

type rule struct {
	name  string
	roles []string
	allow []pattern
	where []condition
}

type pattern struct {
	agent, action string // "*" matches anything
	text          string
}

type condition struct {
	key, op, value string
	re             *regexp.Regexp
	text           string
}

// Decision is the outcome of Authorize.
type Decision struct {
	Allowed bool
	// Rule is the rule that allowed.
	Rule string
	// Reason, for a denial, names the rule that would have been needed.
	Reason string
}

// nameRe is the grammar of a rule's own name (not an agent name).
var nameRe = lazyre.New(`^[A-Za-z0-9][A-Za-z0-9_.:,*-]{0,127}$`)

// Load reads and parses a policy file. Whoever can write the policy can
// allow themselves anything, so it is refused when group or others can
// write it or a directory above it, or when it is owned by a user other
// than root and signetd's own (see trustfile).
func Load(path string) (*Policy, error) {
	data, err := trustfile.ReadFile(path, trustfile.Options{What: "policy"})
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	p, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return p, nil
}

// Parse parses a policy document strictly: unknown keys, a second YAML
// document, and any invalid role, pattern or condition are errors.
func Parse(data []byte) (*Policy, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var f file
	if err := dec.Decode(&f); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("policy: empty policy file: want a rules: list")
		}
		return nil, fmt.Errorf("policy: %w", err)
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, errors.New("policy: more than one YAML document")
	}
	p := &Policy{}
	names := map[string]int{}
	for i, spec := range f.Rules {
		r, err := compile(spec)
		if err != nil {
			return nil, fmt.Errorf("policy: rule %d: %w", i+1, err)
		}
		if prev, dup := names[r.name]; dup {
			return nil, fmt.Errorf("policy: rule %d: name %q is already used by rule %d", i+1, r.name, prev)
		}
		names[r.name] = i + 1
		p.rules = append(p.rules, r)
	}
	return p, nil
}

func compile(spec ruleSpec) (rule, error) {
	var r rule
	if len(spec.Roles) == 0 {
		return r, errors.New("roles: want at least one role")
	}
	for _, role := range spec.Roles {
		if err := grammar.CheckRole(role); err != nil {
			return r, err
		}
		if slices.Contains(r.roles, role) {
			return r, fmt.Errorf("role %q listed twice", role)
		}
		r.roles = append(r.roles, role)
	}
	if len(spec.Allow) == 0 {
		return r, errors.New(`allow: want at least one AGENT.ACTION pattern such as "package.*"`)
	}
	for _, text := range spec.Allow {
		pat, err := parsePattern(text)
		if err != nil {
			return r, err
		}
		r.allow = append(r.allow, pat)
	}
	for _, text := range spec.Where {
		c, err := parseCondition(text)
		if err != nil {
			return r, err
		}
		r.where = append(r.where, c)
	}
	r.name = spec.Name
	if r.name == "" {
		r.name = strings.Join(spec.Roles, ",") + ":" + strings.Join(spec.Allow, ",")
	} else if !nameRe.MatchString(r.name) {
		return r, fmt.Errorf("name %q: want letters, digits and _.:,*- (at most 128)", r.name)
	}
	return r, nil
}

func parsePattern(text string) (pattern, error) {
	if text == "*" {
		return pattern{agent: "*", action: "*", text: text}, nil
	}
	agent, action, ok := strings.Cut(text, ".")
	if !ok {
		return pattern{}, fmt.Errorf(`allow %q: want AGENT.ACTION such as "package.update", "package.*" or "*"`, text)
	}
	for _, part := range []string{agent, action} {
		if part != "*" && grammar.CheckName("agent or action", part) != nil {
			return pattern{}, fmt.Errorf(`allow %q: %q is neither a name (%s) nor "*"`, text, part, grammar.NameRule)
		}
	}
	return pattern{agent: agent, action: action, text: text}, nil
}

func (p pattern) match(agent, action string) bool {
	return (p.agent == "*" || p.agent == agent) && (p.action == "*" || p.action == action)
}

func parseCondition(text string) (condition, error) {
	c := condition{text: text}
	// The operator is at the first '!' or '='; the value may hold either.
	i := strings.IndexAny(text, "!=")
	switch {
	case i < 0:
		return c, fmt.Errorf("where %q: want key=value, key!=value or key=~regex", text)
	case strings.HasPrefix(text[i:], "!="):
		c.op = "!="
	case strings.HasPrefix(text[i:], "=~"):
		c.op = "=~"
	case text[i] == '=':
		c.op = "="
	default:
		return c, fmt.Errorf("where %q: want key=value, key!=value or key=~regex", text)
	}
	c.key, c.value = text[:i], text[i+len(c.op):]
	if err := grammar.CheckFactKey(c.key); err != nil {
		return c, fmt.Errorf("where %q: %w", text, err)
	}
	if c.op == "=~" {
		// Compile alone first so that the error speaks of what was written.
		if _, err := regexp.Compile(c.value); err != nil {
			return c, fmt.Errorf("where %q: %w", text, err)
		}
		c.re = regexp.MustCompile(`\A(?:` + c.value + `)\z`)
	}
	return c, nil
}

// holds reports whether the condition holds for facts.
func (c condition) holds(facts map[string]string) bool {
	v, ok := facts[c.key]
	if !ok {
		return false
	}
	switch c.op {
	case "=":
		return v == c.value
	case "!=":
		return v != c.value
	default:
		return c.re.MatchString(v)
	}
}

// Authorize decides whether a caller holding roles may run agent.action on
// a host with these facts. The first rule that allows wins; with none, the
// request is denied and Reason tells the operator what rule is missing or
// which condition failed.
func (p *Policy) Authorize(roles []string, agent, action string, facts map[string]string) Decision {
	target := agent + "." + action
	var blocked []string  // rules that match roles and action but not the host
	var otherRoles []rule // rules that match the action for other roles
	if p != nil {
		for _, r := range p.rules {
			pat, ok := r.matchAction(agent, action)
			if !ok {
				continue
			}
			if !r.grants(roles) {
				otherRoles = append(otherRoles, r)
				continue
			}
			failed := r.failed(facts)
			if len(failed) == 0 {
				return Decision{Allowed: true, Rule: r.name}
			}
			blocked = append(blocked, fmt.Sprintf("rule %q allows %s for %s only where %s (%s)",
				r.name, pat.text, list(r.roles), strings.Join(conditionTexts(r.where), ", "), hostHas(failed, facts)))
		}
	}
	who := "roles " + list(roles)
	if len(roles) == 0 {
		who = "a caller with no roles"
	}
	var reason string
	switch {
	case len(blocked) > 0:
		reason = fmt.Sprintf("no rule allows %s to run %s; %s", who, target, strings.Join(blocked, "; "))
	case len(otherRoles) > 0:
		var held []string
		for _, r := range otherRoles {
			h := fmt.Sprintf("rule %q allows it for %s", r.name, list(r.roles))
			if len(r.where) > 0 {
				h += " where " + strings.Join(conditionTexts(r.where), ", ")
			}
			held = append(held, h)
		}
		reason = fmt.Sprintf("no rule allows %s to run %s; %s", who, target, strings.Join(held, "; "))
	case len(roles) == 0:
		reason = fmt.Sprintf("no rule allows %s to run %s: give the caller a role in authorized_keys (roles=\"...\") and add a rule allowing %q", who, target, target)
	default:
		reason = fmt.Sprintf("no rule allows %s to run %s: add a rule with roles %s allowing %q", who, target, list(roles), target)
	}
	return Decision{Reason: reason}
}

func (r rule) matchAction(agent, action string) (pattern, bool) {
	for _, p := range r.allow {
		if p.match(agent, action) {
			return p, true
		}
	}
	return pattern{}, false
}

func (r rule) grants(roles []string) bool {
	for _, have := range roles {
		if slices.Contains(r.roles, have) {
			return true
		}
	}
	return false
}

func (r rule) failed(facts map[string]string) []condition {
	var out []condition
	for _, c := range r.where {
		if !c.holds(facts) {
			out = append(out, c)
		}
	}
	return out
}

// hostHas describes what the host's facts say for the failed conditions:
// "this host has env=prod" or "this host has no env fact".
func hostHas(failed []condition, facts map[string]string) string {
	var parts []string
	seen := map[string]bool{}
	for _, c := range failed {
		if seen[c.key] {
			continue
		}
		seen[c.key] = true
		if v, ok := facts[c.key]; ok {
			parts = append(parts, c.key+"="+v)
		} else {
			parts = append(parts, "no "+c.key+" fact")
		}
	}
	return "this host has " + strings.Join(parts, ", ")
}

func conditionTexts(cs []condition) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.text
	}
	return out
}

func list(items []string) string { return "[" + strings.Join(items, " ") + "]" }
