package policy

import (
	"fmt"
	"slices"
)

// CheckAgents checks the agents the allow patterns name against those
// this signetd knows: builtin are the plugins compiled into the binary
// (rpcutil included), offered those this host serves (its enabled
// built-ins and its external plugins).
//
// A pattern whose agent is neither, and is a likely typo of a built-in or
// offered agent (see Nearest: "pakage" for "package"), is a typo and an error: it can never
// match what its author meant. Any other unknown agent may be an external
// plugin installed on other hosts that share this policy, so it is only a
// warning, returned for the caller to log. A built-in this host does not
// enable is not worth a word: one policy serves many kinds of host.
func (p *Policy) CheckAgents(builtin, offered []string) (warnings []string, err error) {
	for i, r := range p.rules {
		for _, pat := range r.allow {
			if pat.agent == "*" || slices.Contains(builtin, pat.agent) || slices.Contains(offered, pat.agent) {
				continue
			}
			where := fmt.Sprintf("%s: rules[%d].%s %q", p.at(pat.line), i+1, pat.key, pat.text)
			if near := Nearest(pat.agent, append(slices.Clone(builtin), offered...)); near != "" {
				return warnings, fmt.Errorf("%s: no agent %q; did you mean %q?", where, pat.agent, near)
			}
			warnings = append(warnings, fmt.Sprintf("%s: no plugin on this host offers agent %q (fine if it is an external plugin of other hosts)", where, pat.agent))
		}
	}
	pats, entries := p.approvalPatterns()
	for i, pat := range pats {
		if pat.agent == "*" || slices.Contains(builtin, pat.agent) || slices.Contains(offered, pat.agent) {
			continue
		}
		where := fmt.Sprintf("%s: approvals[%d].%s %q", p.at(pat.line), entries[i], pat.key, pat.text)
		if near := Nearest(pat.agent, append(slices.Clone(builtin), offered...)); near != "" {
			return warnings, fmt.Errorf("%s: no agent %q; did you mean %q?", where, pat.agent, near)
		}
	}
	return warnings, nil
}

func (p *Policy) at(line int) string {
	if p.file == "" {
		return fmt.Sprintf("line %d", line)
	}
	return fmt.Sprintf("%s:%d", p.file, line)
}

// Nearest returns the name in names closest to s when it is a likely
// typo of it: one edit away (a letter added, dropped, changed, or two
// swapped) for a name of four letters, two for longer names; "" otherwise,
// for names of three letters or fewer (every short name is a letter or two
// from another), and when s is one of names.
func Nearest(s string, names []string) string {
	limit := 1
	switch {
	case len(s) <= 3:
		return ""
	case len(s) > 4:
		limit = 2
	}
	best, bestD := "", limit+1
	for _, n := range names {
		if n == s {
			return ""
		}
		if d := distance(s, n); d < bestD {
			best, bestD = n, d
		}
	}
	return best
}

// distance is the optimal string alignment distance between a and b:
// Levenshtein's, with a swap of two neighbouring letters counted as one.
func distance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}

// CheckRoles returns a warning for each role the rules grant that no key
// in authorized_keys holds (held): such a rule allows nobody, which is
// usually a typo ("opps" for "ops") or a key not yet added.
func (p *Policy) CheckRoles(held []string) []string {
	var warnings []string
	seen := map[string]bool{}
	for i, r := range p.rules {
		for _, role := range r.roles {
			if slices.Contains(held, role) || seen[role] {
				continue
			}
			seen[role] = true
			w := fmt.Sprintf("%s: rules[%d].roles: no key in authorized_keys has role %q, so this rule allows nobody", p.at(r.line), i+1, role)
			if near := Nearest(role, held); near != "" {
				w += fmt.Sprintf("; did you mean %q?", near)
			}
			warnings = append(warnings, w)
		}
	}
	return append(warnings, p.approvalRoleWarnings(held)...)
}
