package policy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const approvalPolicy = `rules:
  - roles: [deploy, approver]
    allow: ["package.*"]
approvals:
  - name: prod-updates
    actions: ["package.update"]
    where: ["env=prod"]
    role: approver
  - actions: ["service.*"]
    count: 2
    role: approver
`

// The approvals list names, per scope, how many approvals from which role
// a request needs; every matching entry applies, whatever rule allowed.
func TestApprovalsScope(t *testing.T) {
	p, err := Parse([]byte(approvalPolicy))
	if err != nil {
		t.Fatal(err)
	}
	prod, dev := map[string]string{"env": "prod"}, map[string]string{"env": "dev"}
	if got := p.Approvals("package", "update", prod); len(got) != 1 || got[0] != (ApprovalNeed{Rule: "prod-updates", Count: 1, Role: "approver"}) {
		t.Errorf("prod package.update: %+v", got)
	}
	if got := p.Approvals("package", "update", dev); len(got) != 0 {
		t.Errorf("dev package.update needs %+v, want nothing", got)
	}
	if got := p.Approvals("package", "status", prod); len(got) != 0 {
		t.Errorf("package.status needs %+v, want nothing", got)
	}
	if got := p.Approvals("service", "restart", nil); len(got) != 1 || got[0].Count != 2 || got[0].Rule != "approver:service.*" {
		t.Errorf("service.restart: %+v", got)
	}
	if got := (*Policy)(nil).Approvals("package", "update", prod); got != nil {
		t.Errorf("nil policy: %+v", got)
	}
	if w := p.CheckRoles([]string{"deploy"}); !strings.Contains(strings.Join(w, "\n"), `approvals[1].role: no key in authorized_keys has role "approver"`) {
		t.Errorf("warnings %q, want one about the approver role", w)
	}
}

// Mistakes in the approvals list are refused at load with the line and
// the key, in the style of the rules.
func TestApprovalTypos(t *testing.T) {
	dir := t.TempDir()
	head := "rules:\n  - roles: [ops]\n    allow: [\"package.*\"]\napprovals:\n"
	for _, tc := range []struct{ name, doc, want string }{
		{"no role", "  - actions: [\"package.update\"]\n", `policy.yaml:5: approvals[1].role: want the role whose keys approve, such as approver`},
		{"bad role", "  - actions: [\"package.update\"]\n    role: \"app rover\"\n", `policy.yaml:6: approvals[1].role:`},
		{"no actions", "  - role: approver\n", `policy.yaml:5: approvals[1].actions: want at least one AGENT.ACTION pattern`},
		{"bad pattern", "  - role: approver\n    actions: [\"package\"]\n", `policy.yaml:6: approvals[1].actions[1] "package": want AGENT.ACTION`},
		{"zero count", "  - role: approver\n    actions: [\"package.update\"]\n    count: 0\n", `policy.yaml:7: approvals[1].count: want 1 or more approvals (omit it for 1)`},
		{"bad where", "  - role: approver\n    actions: [\"package.update\"]\n    where: [\"env==prod\"]\n", `policy.yaml:7: approvals[1].where[1] "env==prod": the value starts with "="`},
		{"unknown key", "  - role: approver\n    actions: [\"package.update\"]\n    roles: [approver]\n", `policy.yaml:7: approvals[1].roles: unknown key`},
		{"duplicate name", "  - {name: a, role: approver, actions: [\"package.update\"]}\n  - {name: a, role: approver, actions: [\"service.*\"]}\n", `policy.yaml:6: approvals[2]: name "a" is already used by approvals[1]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, "policy.yaml")
			if err := os.WriteFile(path, []byte(head+tc.doc), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := Load(path)
			if err == nil {
				t.Fatalf("accepted:\n%s", head+tc.doc)
			}
			if !strings.Contains(err.Error(), filepath.Join(dir, tc.want)) {
				t.Errorf("got  %v\nwant %s", err, tc.want)
			}
			if strings.Contains(err.Error(), "approvalSpec") {
				t.Errorf("Go type name leaks: %v", err)
			}
		})
	}
}

// An approvals pattern naming a near miss of a built-in agent is a typo.
func TestApprovalCheckAgents(t *testing.T) {
	p, err := Parse([]byte("rules:\n  - roles: [ops]\n    allow: [\"package.*\"]\napprovals:\n  - role: approver\n    actions: [\"pakage.update\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.CheckAgents([]string{"package", "rpcutil"}, []string{"package"})
	if err == nil || !strings.Contains(err.Error(), `line 6: approvals[1].actions[1] "pakage.update": no agent "pakage"; did you mean "package"?`) {
		t.Fatalf("got %v", err)
	}
}
