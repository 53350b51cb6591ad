package policy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const sitePolicy = `
rules:
  - name: ci-deploys-dev
    roles: [ci]
    allow: ["package.*", "service.*", "rpcutil.ping"]
    where: ["env=dev"]
  - name: ops-everything
    roles: [ops, admin]
    allow: ["*"]
  - roles: [deploy]
    allow: ["haproxy.drain", "haproxy.enable", "*.status"]
    where: ["env!=dev", "hostname=~web[0-9]+"]
  - roles: [dba]
    allow: ["dr.restore"]
    where: ["role=db", "site=dr"]
`

func TestAuthorize(t *testing.T) {
	p, err := Parse([]byte(sitePolicy))
	if err != nil {
		t.Fatal(err)
	}
	dev := map[string]string{"env": "dev", "hostname": "web1"}
	prod := map[string]string{"env": "prod", "hostname": "web12"}
	cases := []struct {
		name          string
		roles         []string
		agent, action string
		facts         map[string]string
		allowed       bool
		rule          string
		reason        string // the whole reason, for denials
	}{
		{name: "ci on dev", roles: []string{"ci"}, agent: "package", action: "update", facts: dev,
			allowed: true, rule: "ci-deploys-dev"},
		{name: "exact action", roles: []string{"ci"}, agent: "rpcutil", action: "ping", facts: dev,
			allowed: true, rule: "ci-deploys-dev"},
		{name: "any of several roles", roles: []string{"reader", "ci"}, agent: "service", action: "restart", facts: dev,
			allowed: true, rule: "ci-deploys-dev"},
		{name: "star allows everything", roles: []string{"admin"}, agent: "haproxy", action: "drain", facts: nil,
			allowed: true, rule: "ops-everything"},
		{name: "default rule name, regex and != conditions", roles: []string{"deploy"}, agent: "haproxy", action: "drain", facts: prod,
			allowed: true, rule: "deploy:haproxy.drain,haproxy.enable,*.status"},
		{name: "wildcard agent", roles: []string{"deploy"}, agent: "service", action: "status", facts: prod,
			allowed: true, rule: "deploy:haproxy.drain,haproxy.enable,*.status"},
		{
			name: "ci on prod names the rule and the fact", roles: []string{"ci"}, agent: "package", action: "update", facts: prod,
			reason: `no rule allows roles [ci] to run package.update; rule "ci-deploys-dev" allows package.* for [ci] only where env=dev (this host has env=prod)`,
		},
		{
			name: "missing fact", roles: []string{"ci"}, agent: "package", action: "update", facts: map[string]string{},
			reason: `no rule allows roles [ci] to run package.update; rule "ci-deploys-dev" allows package.* for [ci] only where env=dev (this host has no env fact)`,
		},
		{
			name: "regex is anchored", roles: []string{"deploy"}, agent: "haproxy", action: "drain",
			facts:  map[string]string{"env": "prod", "hostname": "web1-old"},
			reason: `no rule allows roles [deploy] to run haproxy.drain; rule "deploy:haproxy.drain,haproxy.enable,*.status" allows haproxy.drain for [deploy] only where env!=dev, hostname=~web[0-9]+ (this host has hostname=web1-old)`,
		},
		{
			name: "!= fails on equal value", roles: []string{"deploy"}, agent: "haproxy", action: "drain", facts: dev,
			reason: `no rule allows roles [deploy] to run haproxy.drain; rule "deploy:haproxy.drain,haproxy.enable,*.status" allows haproxy.drain for [deploy] only where env!=dev, hostname=~web[0-9]+ (this host has env=dev)`,
		},
		{
			name: "!= does not hold on a missing fact", roles: []string{"deploy"}, agent: "haproxy", action: "enable",
			facts:  map[string]string{"hostname": "web3"},
			reason: `no rule allows roles [deploy] to run haproxy.enable; rule "deploy:haproxy.drain,haproxy.enable,*.status" allows haproxy.enable for [deploy] only where env!=dev, hostname=~web[0-9]+ (this host has no env fact)`,
		},
		{
			name: "two failed conditions", roles: []string{"dba"}, agent: "dr", action: "restore",
			facts:  map[string]string{"role": "web"},
			reason: `no rule allows roles [dba] to run dr.restore; rule "dba:dr.restore" allows dr.restore for [dba] only where role=db, site=dr (this host has role=web, no site fact)`,
		},
		{
			name: "action allowed for other roles only", roles: []string{"ci"}, agent: "haproxy", action: "drain", facts: prod,
			reason: `no rule allows roles [ci] to run haproxy.drain; rule "ops-everything" allows it for [ops admin]; rule "deploy:haproxy.drain,haproxy.enable,*.status" allows it for [deploy] where env!=dev, hostname=~web[0-9]+`,
		},
		{
			name: "action allowed for others, with conditions", roles: []string{"deploy"}, agent: "package", action: "update", facts: prod,
			reason: `no rule allows roles [deploy] to run package.update; rule "ci-deploys-dev" allows it for [ci] where env=dev; rule "ops-everything" allows it for [ops admin]`,
		},
		{
			name: "no roles", roles: nil, agent: "package", action: "update", facts: dev,
			reason: `no rule allows a caller with no roles to run package.update; rule "ci-deploys-dev" allows it for [ci] where env=dev; rule "ops-everything" allows it for [ops admin]`,
		},
		{
			name: "action part is literal", roles: []string{"deploy"}, agent: "haproxy", action: "drainx", facts: prod,
			reason: `no rule allows roles [deploy] to run haproxy.drainx; rule "ops-everything" allows it for [ops admin]`,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := p.Authorize(tc.roles, tc.agent, tc.action, tc.facts)
			if d.Allowed != tc.allowed {
				t.Fatalf("Allowed = %v (%s), want %v", d.Allowed, d.Reason, tc.allowed)
			}
			if tc.allowed {
				if d.Rule != tc.rule || d.Reason != "" {
					t.Errorf("Rule = %q Reason = %q, want rule %q", d.Rule, d.Reason, tc.rule)
				}
				return
			}
			if d.Rule != "" {
				t.Errorf("denial carries rule %q", d.Rule)
			}
			if d.Reason != tc.reason {
				t.Errorf("Reason:\n got  %s\n want %s", d.Reason, tc.reason)
			}
		})
	}
}

func TestAuthorizeEmptyPolicyDenies(t *testing.T) {
	for _, doc := range []string{"rules: []\n", "rules:\n"} {
		p, err := Parse([]byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		d := p.Authorize([]string{"ops"}, "package", "update", nil)
		want := `no rule allows roles [ops] to run package.update: add a rule with roles [ops] allowing "package.update"`
		if d.Allowed || d.Reason != want {
			t.Errorf("%q: got %+v, want a denial %q", doc, d, want)
		}
	}
	var nilPolicy *Policy
	if d := nilPolicy.Authorize([]string{"ops"}, "package", "update", nil); d.Allowed {
		t.Error("nil policy allowed a request")
	}
	p, _ := Parse([]byte("rules: []\n"))
	if d := p.Authorize(nil, "package", "update", nil); !strings.Contains(d.Reason, `roles="..."`) {
		t.Errorf("no-roles hint missing: %s", d.Reason)
	}
}

func TestParseRejects(t *testing.T) {
	cases := []struct {
		name, doc, wantErr string
	}{
		{"empty document", "", "empty policy file"},
		{"unknown top-level key", "rules: []\ndefault: allow\n", "default: unknown key"},
		{"unknown rule key", "rules:\n  - roles: [ci]\n    allow: [\"*\"]\n    deny: [\"x.y\"]\n", "rules[1].deny: unknown key"},
		{"misspelt key", "rules:\n  - role: [ci]\n    allow: [\"*\"]\n", "rules[1].role: unknown key"},
		{"two documents", "rules: []\n---\nrules: []\n", "more than one YAML document"},
		{"no roles", "rules:\n  - allow: [\"*\"]\n", "line 2: rules[1].roles: want at least one role"},
		{"bad role", "rules:\n  - roles: [\"Ops Team\"]\n    allow: [\"*\"]\n", `role "Ops Team"`},
		{"duplicate role", "rules:\n  - roles: [ci, ci]\n    allow: [\"*\"]\n", "listed twice"},
		{"no allow", "rules:\n  - roles: [ci]\n", "allow: want at least one"},
		{"pattern without dot", "rules:\n  - roles: [ci]\n    allow: [package]\n", `allow[1] "package": want AGENT.ACTION`},
		{"partial wildcard", "rules:\n  - roles: [ci]\n    allow: [\"pack*.update\"]\n", `"pack*" is neither`},
		{"three parts", "rules:\n  - roles: [ci]\n    allow: [\"a.b.c\"]\n", `"b.c" is neither`},
		{"shell chars in pattern", "rules:\n  - roles: [ci]\n    allow: [\"package.$(id)\"]\n", "is neither"},
		{"empty action", "rules:\n  - roles: [ci]\n    allow: [\"package.\"]\n", `"" is neither`},
		{"condition without operator", "rules:\n  - roles: [ci]\n    allow: [\"*\"]\n    where: [env]\n", `where[1] "env": want key=value`},
		{"bang without equals", "rules:\n  - roles: [ci]\n    allow: [\"*\"]\n    where: [\"env!dev\"]\n", "want key=value"},
		{"empty fact name", "rules:\n  - roles: [ci]\n    allow: [\"*\"]\n    where: [\"=dev\"]\n", `fact name ""`},
		{"bad regex", "rules:\n  - roles: [ci]\n    allow: [\"*\"]\n    where: [\"host=~web[\"]\n", "missing closing ]"},
		{"bad name", "rules:\n  - name: \"my rule\"\n    roles: [ci]\n    allow: [\"*\"]\n", `name "my rule"`},
		{"duplicate name", "rules:\n  - name: r\n    roles: [ci]\n    allow: [\"*\"]\n  - name: r\n    roles: [ops]\n    allow: [\"*\"]\n", `rules[2]: name "r" is already used by rule 1`},
		{"duplicate default name", "rules:\n  - roles: [ci]\n    allow: [\"*\"]\n  - roles: [ci]\n    allow: [\"*\"]\n", "already used"},
		{"roles not a list", "rules:\n  - roles: ci\n    allow: [\"*\"]\n", `rules[1].roles: "ci" is a string, want a list`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.doc))
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %q does not mention %q", err, tc.wantErr)
			}
		})
	}
}

func TestConditionOperators(t *testing.T) {
	cases := []struct {
		cond  string
		value string
		holds bool
	}{
		{"k=v", "v", true},
		{"k=v", "vv", false},
		{"k=a=~b", "a=~b", true}, // the value may contain operator characters
		{"k!=v", "w", true},
		{"k!=v", "v", false},
		{"k=~v.*", "value", true},
		{"k=~v", "value", false},
		{"k=~(a|b)", "b", true},
		{"k=", "", true},
		{"k=~a|b", "xb", false}, // alternation stays inside the anchors
	}
	for _, tc := range cases {
		c, err := parseCondition(tc.cond)
		if err != nil {
			t.Fatalf("%s: %v", tc.cond, err)
		}
		if got := c.holds(map[string]string{"k": tc.value}); got != tc.holds {
			t.Errorf("%s with k=%q: holds = %v, want %v", tc.cond, tc.value, got, tc.holds)
		}
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(path, []byte(sitePolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if d := p.Authorize([]string{"ops"}, "package", "remove", nil); !d.Allowed {
		t.Fatalf("loaded policy denies ops: %s", d.Reason)
	}
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("rules:\n  - roles: [ci]\n"), 0o644)
	if _, err := Load(bad); err == nil || !strings.HasPrefix(err.Error(), bad+":2: ") {
		t.Fatalf("got %v, want an error naming %s", err, bad)
	}
	if _, err := Load(filepath.Join(dir, "absent.yaml")); !os.IsNotExist(unwrapAll(err)) {
		t.Fatalf("got %v, want not-exist", err)
	}
}

func unwrapAll(err error) error {
	for {
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return err
		}
		err = u.Unwrap()
	}
}

func TestAdminAndFreshRoles(t *testing.T) {
	p, err := Parse([]byte("rules:\n  - roles: [ops]\n    allow: [\"*\"]\nadmin_roles: [admin]\nfresh_revocation_roles: [deploy, ops]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !p.IsAdmin([]string{"x", "admin"}) || p.IsAdmin([]string{"ops"}) {
		t.Error("admin_roles not applied")
	}
	if !p.NeedsFreshRevocations([]string{"deploy"}) || p.NeedsFreshRevocations([]string{"admin"}) {
		t.Error("fresh_revocation_roles not applied")
	}
	if _, err := Parse([]byte("rules: []\nadmin_roles: [\"bad role\"]\n")); err == nil || !strings.Contains(err.Error(), "admin_roles") {
		t.Errorf("bad admin role: %v", err)
	}
	var none *Policy
	if none.IsAdmin([]string{"admin"}) {
		t.Error("nil policy has admins")
	}
}
