package grammar

import (
	"regexp"
	"strings"
	"testing"
)

func TestGrammars(t *testing.T) {
	cases := []struct {
		check func(string) error
		ok    []string
		bad   []string
	}{
		{func(s string) error { return CheckName("agent", s) },
			[]string{"package", "db_restore", "rpcutil", "a", "x" + strings.Repeat("y", 63)},
			[]string{"", "db-restore", "Package", "1abc", "_x", "a.b", "a b", "x" + strings.Repeat("y", 64), "é"}},
		{CheckIdentity,
			[]string{"web1", "web1.example.com", "db_2", "10.0.0.1", "A" + strings.Repeat("b", 252)},
			[]string{"", "-web1", "_web1", ".web", "web 1", "web1;x", "web*", "web>", "A" + strings.Repeat("b", 253)}},
		{CheckFactKey,
			[]string{"os", "os.family", "_private", "zone-a", "9lives"},
			[]string{"", ".os", "-os", "os family", "os=1", strings.Repeat("k", 65)}},
		{CheckRole,
			[]string{"admin", "read-only", "ops_2", "0day"},
			[]string{"", "Admin", "-x", "a b", strings.Repeat("r", 33)}},
	}
	for _, c := range cases {
		for _, s := range c.ok {
			if err := c.check(s); err != nil {
				t.Errorf("%q refused: %v", s, err)
			}
		}
		for _, s := range c.bad {
			if err := c.check(s); err == nil {
				t.Errorf("%q accepted", s)
			}
		}
	}
}

// TestRulesMatchTheirRegexps checks each byte-loop grammar against the
// regexp it replaces, on every short string over a small alphabet and on
// strings at and around the length bounds.
func TestRulesMatchTheirRegexps(t *testing.T) {
	cases := []struct {
		rule rule
		re   *regexp.Regexp
	}{
		{nameRe, regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)},
		{identityRe, regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$`)},
		{factKeyRe, regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$`)},
		{roleRe, regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,31}$`)},
		{operatorRe, regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$`)},
	}
	alphabet := []string{"a", "Z", "0", "_", ".", "-", "@", "+", " ", "\n", "é", "*", ">", "\x00"}
	var inputs []string
	var gen func(prefix string, n int)
	gen = func(prefix string, n int) {
		inputs = append(inputs, prefix)
		if n == 0 {
			return
		}
		for _, a := range alphabet {
			gen(prefix+a, n-1)
		}
	}
	gen("", 3)
	for _, n := range []int{31, 32, 33, 63, 64, 65, 252, 253, 254} {
		for _, c := range []string{"a", "A", "1", "_", "-", "."} {
			inputs = append(inputs, "a"+strings.Repeat(c, n-1), c+strings.Repeat("a", n-1), strings.Repeat("a", n-1)+"\n")
		}
	}
	for _, c := range cases {
		for _, s := range inputs {
			if got, want := c.rule.MatchString(s), c.re.MatchString(s); got != want {
				t.Errorf("%s: %q: rule says %v, regexp %v", c.re, s, got, want)
			}
		}
	}
}
