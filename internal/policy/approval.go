package policy

import (
	"fmt"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/signetbus/signet/internal/grammar"
)

// The two-person rule. An optional approvals list names scopes whose
// requests run only with approvals from other operators:
//
//	approvals:
//	  - name: prod-updates          # optional; default "ROLE:PATTERNS"
//	    actions: ["package.update"] # AGENT.ACTION patterns, as in allow
//	    where: ["env=prod"]         # optional fact conditions, as in rules
//	    role: approver              # the role an approver's key must hold
//	    count: 1                    # distinct approver keys; default 1
//
// Every entry whose actions match and whose conditions hold applies,
// whichever rule allowed the request: an admin rule cannot bypass it. The
// requester's own key never counts, and a key counts once however many
// approvals it signs (the host checks this, see agents and bus).

// approvalSpec is one entry as written in the file.
type approvalSpec struct {
	// Name identifies the entry in refusals. Default: the role and the
	// patterns, "approver:package.update".
	Name string `yaml:"name"`
	// Actions lists AGENT.ACTION patterns. Required.
	Actions []string `yaml:"actions"`
	// Where lists fact conditions that must all hold. Optional.
	Where []string `yaml:"where"`
	// Role is the role an approver needs. Required.
	Role string `yaml:"role"`
	// Count is how many distinct approver keys are needed; default 1.
	Count *int `yaml:"count"`
}

type approvalRule struct {
	name    string
	actions []pattern
	where   []condition
	role    string
	count   int
	line    int
}

// ApprovalNeed is one approvals entry that applies to a request.
type ApprovalNeed struct {
	// Rule names the entry.
	Rule string
	// Count approvals from distinct keys holding Role are needed.
	Count int
	Role  string
}

// String is the refusal's wording: "needs 1 approval from role approver".
func (n ApprovalNeed) String() string {
	s := "s"
	if n.Count == 1 {
		s = ""
	}
	return fmt.Sprintf("needs %d approval%s from role %s", n.Count, s, n.Role)
}

// approvalLines are the lines of one entry and of its keys and items.
type approvalLines struct {
	entry, role, count int
	actions, where     []int
}

func approvalLinesOf(root *yaml.Node) []approvalLines {
	var out []approvalLines
	eachListItem(root, "approvals", func(line int) { out = append(out, approvalLines{entry: line}) },
		func(name string, line int, items []int) {
			al := &out[len(out)-1]
			switch name {
			case "role":
				al.role = line
			case "count":
				al.count = line
			case "actions":
				al.actions = items
			case "where":
				al.where = items
			}
		})
	return out
}

// compileApprovals compiles the approvals list; at formats a line.
func compileApprovals(specs []approvalSpec, root *yaml.Node, at func(int) string) ([]approvalRule, error) {
	lines := approvalLinesOf(root)
	names := map[string]int{}
	var out []approvalRule
	for i, spec := range specs {
		var ln approvalLines
		if i < len(lines) {
			ln = lines[i]
		}
		fail := func(line int, format string, args ...any) error {
			return fmt.Errorf("%s: approvals[%d].%s", at(max(line, ln.entry)), i+1, fmt.Sprintf(format, args...))
		}
		r := approvalRule{role: spec.Role, count: 1, line: ln.entry}
		if spec.Role == "" {
			return nil, fail(ln.entry, "role: want the role whose keys approve, such as approver")
		}
		if err := grammar.CheckRole(spec.Role); err != nil {
			return nil, fail(ln.role, "role: %v", err)
		}
		if spec.Count != nil {
			if *spec.Count < 1 {
				return nil, fail(ln.count, "count: want 1 or more approvals (omit it for 1)")
			}
			r.count = *spec.Count
		}
		if len(spec.Actions) == 0 {
			return nil, fail(ln.entry, `actions: want at least one AGENT.ACTION pattern such as "package.update"`)
		}
		for j, text := range spec.Actions {
			line := lineOf(ln.actions, j, ln.entry)
			pat, err := parsePattern(text)
			if err != nil {
				return nil, fail(line, "actions[%d] %s", j+1, strings.TrimPrefix(err.Error(), "allow "))
			}
			pat.line, pat.key = line, fmt.Sprintf("actions[%d]", j+1)
			r.actions = append(r.actions, pat)
		}
		for j, text := range spec.Where {
			line := lineOf(ln.where, j, ln.entry)
			c, err := parseCondition(text)
			if err != nil {
				return nil, fail(line, "where[%d] %s", j+1, strings.TrimPrefix(err.Error(), "where "))
			}
			c.line = line
			if msg := contradicts(c, r.where); msg != "" {
				return nil, fail(line, "where[%d] %q: %s", j+1, text, msg)
			}
			r.where = append(r.where, c)
		}
		r.name = spec.Name
		if r.name == "" {
			r.name = spec.Role + ":" + strings.Join(spec.Actions, ",")
		} else if !nameRe.MatchString(r.name) {
			return nil, fail(ln.entry, "name %q: want letters, digits and _.:,*- (at most 128)", r.name)
		}
		if prev, dup := names[r.name]; dup {
			return nil, fmt.Errorf("%s: approvals[%d]: name %q is already used by approvals[%d]", at(ln.entry), i+1, r.name, prev)
		}
		names[r.name] = i + 1
		out = append(out, r)
	}
	return out, nil
}

// Approvals returns the approvals entries that apply to agent.action on a
// host with these facts; none when the request needs no approval.
func (p *Policy) Approvals(agent, action string, facts map[string]string) []ApprovalNeed {
	if p == nil {
		return nil
	}
	var out []ApprovalNeed
	for _, r := range p.approvals {
		matched := false
		for _, pat := range r.actions {
			matched = matched || pat.match(agent, action)
		}
		if !matched {
			continue
		}
		held := true
		for _, c := range r.where {
			held = held && c.holds(facts)
		}
		if held {
			out = append(out, ApprovalNeed{Rule: r.name, Count: r.count, Role: r.role})
		}
	}
	return out
}

// approvalPatterns lists the approvals entries' patterns for CheckAgents,
// with where they are written.
func (p *Policy) approvalPatterns() (pats []pattern, entry []int) {
	for i, r := range p.approvals {
		for _, pat := range r.actions {
			pats = append(pats, pat)
			entry = append(entry, i+1)
		}
	}
	return pats, entry
}

// approvalRoleWarnings warns of approver roles no key holds: such an
// entry can never be satisfied, so what it scopes never runs.
func (p *Policy) approvalRoleWarnings(held []string) []string {
	var out []string
	for i, r := range p.approvals {
		if slices.Contains(held, r.role) {
			continue
		}
		w := fmt.Sprintf("%s: approvals[%d].role: no key in authorized_keys has role %q, so what it scopes can never be approved", p.at(r.line), i+1, r.role)
		if near := Nearest(r.role, held); near != "" {
			w += fmt.Sprintf("; did you mean %q?", near)
		}
		out = append(out, w)
	}
	return out
}
