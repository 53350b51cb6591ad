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
//
// Two optional lists mark roles for revocation and locks (see bus/control):
//
//	admin_roles: [admin]               # may sign revocation lists and locks
//	fresh_revocation_roles: [deploy]   # served only with a fresh revocation list
//
// An optional approvals list is the two-person rule (see approval.go).
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
	"github.com/signetbus/signet/internal/yamlerr"
)

// Policy is a parsed policy file.
type Policy struct {
	rules []rule
	file  string // "" when parsed from bytes
	// admins and fresh are the admin_roles and fresh_revocation_roles.
	admins, fresh []string
	// approvals is the two-person rule (approval.go).
	approvals []approvalRule
}

// document is the YAML document.
type document struct {
	// Rules are checked in order; the first that allows wins.
	Rules []ruleSpec `yaml:"rules"`
	// AdminRoles are the roles whose keys may sign revocation lists and
	// locks (signet revoke, lock, unlock). None by default: no key may.
	AdminRoles []string `yaml:"admin_roles"`
	// FreshRevocationRoles are the roles a host serves only while its
	// broker-distributed revocation list is younger than the configured
	// revocation_max_age. None by default.
	FreshRevocationRoles []string `yaml:"fresh_revocation_roles"`
	// Approvals are the scopes whose requests need approvals from other
	// operators (the two-person rule, see approval.go). None by default.
	Approvals []approvalSpec `yaml:"approvals"`
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
	line  int // of the rule's roles, or the rule
}

type pattern struct {
	agent, action string // "*" matches anything
	text          string
	line          int    // in the policy file
	key           string // "allow[2]"
}

type condition struct {
	key, op, value string
	re             *regexp.Regexp
	text           string
	line           int
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
// than root and signetd's own (see trustfile). Errors name the file, the
// line and the key: "policy.yaml:4: rules[1].where[1] ...".
func Load(path string) (*Policy, error) {
	data, err := trustfile.ReadFile(path, trustfile.Options{What: "policy"})
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	return parse(path, data)
}

// Parse parses a policy document strictly: unknown keys, a second YAML
// document, any invalid role, pattern or condition, and conditions that
// can never hold are errors. Errors start "line N: KEY".
func Parse(data []byte) (*Policy, error) { return parse("", data) }

func parse(file string, data []byte) (*Policy, error) {
	at := func(line int) string {
		if file == "" {
			return fmt.Sprintf("policy: line %d", line)
		}
		return fmt.Sprintf("%s:%d", file, line)
	}
	name := file
	if name == "" {
		name = "policy"
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var f document
	if err := dec.Decode(&f); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s: empty policy file: want a rules: list", name)
		}
		if file == "" {
			return nil, fmt.Errorf("policy: %w", yamlerr.Explain("", data, err))
		}
		return nil, yamlerr.Explain(file, data, err)
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: more than one YAML document", name)
	}
	var root yaml.Node
	_ = yaml.Unmarshal(data, &root)
	lines := ruleLines(&root)
	p := &Policy{file: file}
	for _, set := range []struct {
		key   string
		roles []string
		dst   *[]string
	}{{"admin_roles", f.AdminRoles, &p.admins}, {"fresh_revocation_roles", f.FreshRevocationRoles, &p.fresh}} {
		for _, role := range set.roles {
			if err := grammar.CheckRole(role); err != nil {
				return nil, fmt.Errorf("%s: %s: %w", name, set.key, err)
			}
			*set.dst = append(*set.dst, role)
		}
	}
	names := map[string]int{}
	for i, spec := range f.Rules {
		ln := ruleLinesAt(lines, i)
		r, err := compile(spec, ln)
		if err != nil {
			var le *lineError
			if errors.As(err, &le) {
				return nil, fmt.Errorf("%s: rules[%d].%s", at(le.line), i+1, le.msg)
			}
			return nil, fmt.Errorf("%s: rules[%d]: %w", at(ln.rule), i+1, err)
		}
		if prev, dup := names[r.name]; dup {
			return nil, fmt.Errorf("%s: rules[%d]: name %q is already used by rule %d", at(ln.rule), i+1, r.name, prev)
		}
		names[r.name] = i + 1
		p.rules = append(p.rules, r)
	}
	var err error
	if p.approvals, err = compileApprovals(f.Approvals, &root, at); err != nil {
		return nil, err
	}
	return p, nil
}

// lineError is a problem in a rule at a known line; msg starts with the
// key inside the rule ("where[2] ...").
type lineError struct {
	line int
	msg  string
}

func (e *lineError) Error() string { return e.msg }

// specLines are the lines of one rule and of each item of its lists.
type specLines struct {
	rule, roles     int
	allow, where    []int
	rolesAt, nameAt int
}

func ruleLines(root *yaml.Node) []specLines {
	var out []specLines
	eachListItem(root, "rules", func(line int) { out = append(out, specLines{rule: line}) },
		func(name string, line int, items []int) {
			sl := &out[len(out)-1]
			switch name {
			case "roles":
				sl.roles = line
			case "allow":
				sl.allow = items
			case "where":
				sl.where = items
			}
		})
	return out
}

// eachListItem walks the items of the top-level list key of a YAML
// document, for the line numbers of error messages: item is called with
// each item's line, then field with each of the item's keys, the key's
// line and the lines of the key's list items (if it is a list).
func eachListItem(root *yaml.Node, key string, item func(line int), field func(name string, line int, items []int)) {
	if root.Kind != yaml.DocumentNode || len(root.Content) == 0 || root.Content[0].Kind != yaml.MappingNode {
		return
	}
	m := root.Content[0]
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value != key || m.Content[i+1].Kind != yaml.SequenceNode {
			continue
		}
		for _, it := range m.Content[i+1].Content {
			item(it.Line)
			if it.Kind != yaml.MappingNode {
				continue
			}
			for j := 0; j+1 < len(it.Content); j += 2 {
				k, v := it.Content[j], it.Content[j+1]
				var items []int
				for _, c := range v.Content {
					items = append(items, c.Line)
				}
				field(k.Value, k.Line, items)
			}
		}
	}
}

func ruleLinesAt(all []specLines, i int) specLines {
	if i < len(all) {
		return all[i]
	}
	return specLines{}
}

func lineOf(lines []int, i, fallback int) int {
	if i < len(lines) && lines[i] > 0 {
		return lines[i]
	}
	return fallback
}

func compile(spec ruleSpec, ln specLines) (rule, error) {
	var r rule
	if len(spec.Roles) == 0 {
		return r, &lineError{ln.rule, "roles: want at least one role"}
	}
	for _, role := range spec.Roles {
		if err := grammar.CheckRole(role); err != nil {
			return r, &lineError{max(ln.roles, ln.rule), "roles: " + err.Error()}
		}
		if slices.Contains(r.roles, role) {
			return r, &lineError{max(ln.roles, ln.rule), fmt.Sprintf("roles: role %q listed twice", role)}
		}
		r.roles = append(r.roles, role)
	}
	if len(spec.Allow) == 0 {
		return r, &lineError{ln.rule, `allow: want at least one AGENT.ACTION pattern such as "package.*"`}
	}
	for i, text := range spec.Allow {
		line := lineOf(ln.allow, i, ln.rule)
		pat, err := parsePattern(text)
		if err != nil {
			return r, &lineError{line, fmt.Sprintf("allow[%d] %s", i+1, strings.TrimPrefix(err.Error(), "allow "))}
		}
		pat.line, pat.key = line, fmt.Sprintf("allow[%d]", i+1)
		r.allow = append(r.allow, pat)
	}
	for i, text := range spec.Where {
		line := lineOf(ln.where, i, ln.rule)
		c, err := parseCondition(text)
		if err != nil {
			return r, &lineError{line, fmt.Sprintf("where[%d] %s", i+1, strings.TrimPrefix(err.Error(), "where "))}
		}
		c.line = line
		if msg := contradicts(c, r.where); msg != "" {
			return r, &lineError{line, fmt.Sprintf("where[%d] %q: %s", i+1, text, msg)}
		}
		r.where = append(r.where, c)
	}
	r.line = max(ln.roles, ln.rule)
	r.name = spec.Name
	if r.name == "" {
		r.name = strings.Join(spec.Roles, ",") + ":" + strings.Join(spec.Allow, ",")
	} else if !nameRe.MatchString(r.name) {
		return r, &lineError{ln.rule, fmt.Sprintf("name %q: want letters, digits and _.:,*- (at most 128)", r.name)}
	}
	return r, nil
}

// contradicts says why c can never hold together with the conditions
// before it in the same rule, or "".
func contradicts(c condition, before []condition) string {
	for _, b := range before {
		if b.key != c.key {
			continue
		}
		switch {
		case b.op == "=" && c.op == "=" && b.value != c.value:
			return fmt.Sprintf("%s cannot equal both %q (line %d) and %q, so the rule never matches; use %s=~%s|%s",
				c.key, b.value, b.line, c.value, c.key, regexp.QuoteMeta(b.value), regexp.QuoteMeta(c.value))
		case b.op == "=" && c.op == "!=" && b.value == c.value, b.op == "!=" && c.op == "=" && b.value == c.value:
			return fmt.Sprintf("contradicts %s (line %d), so the rule never matches", b.text, b.line)
		case b.op == "=" && c.op == "=~" && !c.re.MatchString(b.value), b.op == "=~" && c.op == "=" && !b.re.MatchString(c.value):
			return fmt.Sprintf("contradicts %s (line %d), so the rule never matches", b.text, b.line)
		}
	}
	return ""
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
	if k, v := strings.TrimSpace(c.key), strings.TrimSpace(c.value); (k != c.key || v != c.value) && grammar.CheckFactKey(k) == nil {
		return c, fmt.Errorf("where %q: remove the spaces around the operator (%s%s%s)", text, k, c.op, v)
	}
	if c.op != "=~" && strings.HasPrefix(c.value, "=") {
		return c, fmt.Errorf("where %q: the value starts with %q, so it never matches; write %s%s%s", text, "=", c.key, c.op, strings.TrimLeft(c.value, "="))
	}
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

// IsAdmin reports whether roles include one of the policy's admin_roles.
func (p *Policy) IsAdmin(roles []string) bool { return p != nil && anyOf(roles, p.admins) }

// NeedsFreshRevocations reports whether roles include one of the policy's
// fresh_revocation_roles.
func (p *Policy) NeedsFreshRevocations(roles []string) bool { return p != nil && anyOf(roles, p.fresh) }

// AdminRoles returns the policy's admin_roles.
func (p *Policy) AdminRoles() []string {
	if p == nil {
		return nil
	}
	return slices.Clone(p.admins)
}

func anyOf(have, want []string) bool {
	for _, r := range have {
		if slices.Contains(want, r) {
			return true
		}
	}
	return false
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
