package bus

import (
	"regexp"
	"strings"
	"testing"
)

// TestIDAndCollectiveMatchTheirRegexps checks the byte loops against the
// regexps they replaced.
func TestIDAndCollectiveMatchTheirRegexps(t *testing.T) {
	idRe := regexp.MustCompile(`^[0-9a-f]{32}$`)
	collRe := regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	var inputs []string
	for _, c := range []string{"a", "f", "g", "A", "0", "9", "_", "-", ".", " ", "\n", "é"} {
		for _, n := range []int{0, 1, 31, 32, 33, 63, 64, 65} {
			inputs = append(inputs, strings.Repeat(c, n), strings.Repeat("0", max(n-1, 0))+c, c+strings.Repeat("a", max(n-1, 0)))
		}
	}
	inputs = append(inputs, NewID(), NewID()+"\n", strings.ToUpper(NewID()))
	for _, s := range inputs {
		if got, want := CheckID(s) == nil, idRe.MatchString(s); got != want {
			t.Errorf("id %q: loop %v, regexp %v", s, got, want)
		}
		if got, want := CheckCollective(s) == nil, collRe.MatchString(s); got != want {
			t.Errorf("collective %q: loop %v, regexp %v", s, got, want)
		}
	}
}
