package grammar

import (
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
