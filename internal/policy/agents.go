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
// A pattern whose agent is neither, and is within two letters of a
// built-in or offered agent ("pakage" for "package"), is a typo and an error: it can never
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
	return warnings, nil
}

func (p *Policy) at(line int) string {
	if p.file == "" {
		return fmt.Sprintf("line %d", line)
	}
	return fmt.Sprintf("%s:%d", p.file, line)
}

// Nearest returns the name in names closest to s when it is at most two
// edits away (and s is not one of them), else "".
func Nearest(s string, names []string) string {
	best, bestD := "", 3
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

// distance is the Levenshtein distance between a and b.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
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
	return warnings
}
