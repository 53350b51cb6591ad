package policy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A policy that can never match what its author meant is refused at load,
// with the file, the line and the key, and without Go type names.
func TestTyposRejectedWithLine(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ name, doc, want string }{
		{"double equals", "rules:\n  - roles: [ops]\n    allow: [\"package.*\"]\n    where: [\"env==prod\"]\n",
			`policy.yaml:4: rules[1].where[1] "env==prod": the value starts with "=", so it never matches; write env=prod`},
		{"two values for one fact", "rules:\n  - roles: [ops]\n    allow: [\"package.*\"]\n    where:\n      - env=prod\n      - env=dev\n",
			`policy.yaml:6: rules[1].where[2] "env=dev": env cannot equal both "prod" (line 5) and "dev", so the rule never matches; use env=~prod|dev`},
		{"equal and differ", "rules:\n  - roles: [ops]\n    allow: [\"package.*\"]\n    where: [\"env=prod\", \"env!=prod\"]\n",
			`policy.yaml:4: rules[1].where[2] "env!=prod": contradicts env=prod (line 4), so the rule never matches`},
		{"spaces around the operator", "rules:\n  - roles: [ops]\n    allow: [\"package.*\"]\n    where: [\"env = prod\"]\n",
			`policy.yaml:4: rules[1].where[1] "env = prod": remove the spaces around the operator (env=prod)`},
		{"bad pattern has its line", "rules:\n  - roles: [ops]\n    allow:\n      - package.*\n      - package\n",
			`policy.yaml:5: rules[1].allow[2] "package": want AGENT.ACTION`},
		{"unknown key, no Go type", "rules:\n  - roles: [ops]\n    alow: [\"package.*\"]\n",
			`policy.yaml:3: rules[1].alow: unknown key`},
		{"roles not a list", "rules:\n  - roles: ops\n    allow: [\"package.*\"]\n",
			`policy.yaml:2: rules[1].roles: "ops" is a string, want a list`},
		{"missing roles names the rule's line", "rules:\n  - name: x\n    allow: [\"package.*\"]\n",
			`policy.yaml:2: rules[1].roles: want at least one role`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, "policy.yaml")
			if err := os.WriteFile(path, []byte(tc.doc), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := Load(path)
			if err == nil {
				t.Fatalf("accepted:\n%s", tc.doc)
			}
			if !strings.Contains(err.Error(), path[:len(path)-len("policy.yaml")]+tc.want) {
				t.Errorf("got  %v\nwant %s", err, tc.want)
			}
			if strings.Contains(err.Error(), "ruleSpec") || strings.Contains(err.Error(), "policy.file") {
				t.Errorf("Go type name leaks: %v", err)
			}
		})
	}
}

// Patterns that name an agent: a near miss of a built-in agent is a typo
// and refused; an unknown name that may be an external plugin installed
// elsewhere is a warning.
func TestCheckAgents(t *testing.T) {
	p, err := Parse([]byte("rules:\n  - roles: [ops]\n    allow: [\"pakage.*\", \"rpcutil.ping\", \"*.status\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	builtin := []string{"package", "service", "rpcutil"}
	warns, err := p.CheckAgents(builtin, []string{"service", "rpcutil"})
	if err == nil || !strings.Contains(err.Error(), `line 3: rules[1].allow[1] "pakage.*": no agent "pakage"; did you mean "package"?`) {
		t.Fatalf("got %v, want a refusal suggesting package", err)
	}
	if len(warns) != 0 {
		t.Errorf("warnings %q", warns)
	}

	p, err = Parse([]byte("rules:\n  - roles: [ops]\n    allow: [\"corp_backup.run\", \"package.update\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	warns, err = p.CheckAgents(builtin, []string{"service", "rpcutil"})
	if err != nil {
		t.Fatal(err)
	}
	if len(warns) != 1 || !strings.Contains(warns[0], `line 3: rules[1].allow[1] "corp_backup.run": no plugin on this host offers agent "corp_backup"`) {
		t.Errorf("warnings %q, want one about corp_backup", warns)
	}
}

// A role no key holds makes a rule that allows nobody: a warning, with a
// suggestion when it is a near miss.
func TestCheckRoles(t *testing.T) {
	p, err := Parse([]byte("rules:\n  - roles: [ops]\n    allow: [\"*\"]\n  - roles: [opps, ci]\n    allow: [\"package.*\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	w := p.CheckRoles([]string{"ops", "ci"})
	if len(w) != 1 || !strings.Contains(w[0], `line 4: rules[2].roles: no key in authorized_keys has role "opps", so this rule allows nobody; did you mean "ops"?`) {
		t.Errorf("warnings %q", w)
	}
}

func TestNearest(t *testing.T) {
	names := []string{"package", "service", "rpcutil", "slow", "db"}
	for _, tc := range []struct{ in, want string }{
		{"pakage", "package"}, {"pacakge", "package"}, {"servce", "service"}, {"slwo", "slow"},
		{"dr", ""}, {"dns", ""}, {"package", ""}, {"corp_backup", ""}, {"pkg", ""},
	} {
		if got := Nearest(tc.in, names); got != tc.want {
			t.Errorf("Nearest(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
