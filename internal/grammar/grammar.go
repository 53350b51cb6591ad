// Package grammar holds the grammars of the names that several signet
// packages check: agent, action and input names, host identities, fact
// keys and roles. Each grammar is one function here, and every package that
// checks such a name calls it, so the client, the host, the plugin loaders,
// the policy and the workflows cannot drift apart.
//
// The package sits below every other signet package and imports only the
// standard library.
package grammar

import "fmt"

// The grammars are plain byte loops rather than regexps: every signet
// binary links this package, checks identities on every request and reply,
// and a counted repeat such as {0,252} compiles into a program of
// thousands of instructions. grammar_test.go checks each loop against the
// regexp it stands for:
//
//	name      ^[a-z][a-z0-9_]{0,63}$
//	identity  ^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$
//	fact key  ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$
//	role      ^[a-z0-9][a-z0-9_-]{0,31}$
//	operator  ^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$
var (
	nameRe     = rule{max: 64, first: lower, rest: lower | digit | under}
	identityRe = rule{max: 253, first: alnum, rest: alnum | dot | under | dash}
	factKeyRe  = rule{max: 64, first: alnum | under, rest: alnum | under | dot | dash}
	roleRe     = rule{max: 32, first: lower | digit, rest: lower | digit | under | dash}
	operatorRe = rule{max: 64, first: alnum, rest: alnum | dot | under | at | plus | dash}
	runIDRe    = rule{max: 64, first: alnum, rest: alnum | dot | under | dash}
)

// class is a set of byte classes.
type class uint8

const (
	lower class = 1 << iota
	upper
	digit
	under
	dot
	dash
	at
	plus
	alnum = lower | upper | digit
)

func (c class) has(b byte) bool {
	switch {
	case b >= 'a' && b <= 'z':
		return c&lower != 0
	case b >= 'A' && b <= 'Z':
		return c&upper != 0
	case b >= '0' && b <= '9':
		return c&digit != 0
	case b == '_':
		return c&under != 0
	case b == '.':
		return c&dot != 0
	case b == '-':
		return c&dash != 0
	case b == '@':
		return c&at != 0
	case b == '+':
		return c&plus != 0
	}
	return false
}

// rule is one name grammar: a first byte of one class, then bytes of
// another, at most max bytes in all.
type rule struct {
	max         int
	first, rest class
}

// MatchString reports whether s follows the rule.
func (r rule) MatchString(s string) bool {
	if len(s) == 0 || len(s) > r.max || !r.first.has(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if !r.rest.has(s[i]) {
			return false
		}
	}
	return true
}

// NameRule describes the name grammar for error messages.
const NameRule = "a lowercase letter, then lowercase letters, digits and _ (at most 64)"

// CheckName validates an agent (plugin), action or input name; kind says
// which, for the error. Names travel in subjects, policy rules, workflow
// steps, environment variable names and JSON keys, so the grammar is
// narrow: no "-", no ".", no upper case.
func CheckName(kind, n string) error {
	if !nameRe.MatchString(n) {
		return fmt.Errorf("invalid %s name %q: want %s", kind, n, NameRule)
	}
	return nil
}

// CheckIdentity validates a host identity: a host name or FQDN, starting
// with a letter or digit (never "-", so it cannot pass for an option).
func CheckIdentity(id string) error {
	if !identityRe.MatchString(id) {
		return fmt.Errorf("invalid identity %q: want a host name (a letter or digit, then letters, digits and . _ -, at most 253)", id)
	}
	return nil
}

// CheckFactKey validates the name of a fact.
func CheckFactKey(k string) error {
	if !factKeyRe.MatchString(k) {
		return fmt.Errorf("invalid fact name %q: want letters, digits and _ . - (not starting with . or -, at most 64)", k)
	}
	return nil
}

// CheckRole validates a role name, as authorized_keys and the policy use it.
func CheckRole(r string) error {
	if !roleRe.MatchString(r) {
		return fmt.Errorf("invalid role %q: want lowercase letters, digits, _ and - (at most 32)", r)
	}
	return nil
}

// CheckRunID validates a workflow run id as a signed request carries it
// into every host's audit (workflows.NewRunID makes 8 hex digits).
func CheckRunID(id string) error {
	if !runIDRe.MatchString(id) {
		return fmt.Errorf("invalid run id %q: want letters, digits and ._- (at most 64)", id)
	}
	return nil
}

// CheckOperator validates an operator's name: the name= of a trusted key,
// or the key ID of a user certificate.
func CheckOperator(n string) error {
	if !operatorRe.MatchString(n) {
		return fmt.Errorf("invalid operator name %q: want letters, digits and ._@+- (at most 64)", n)
	}
	return nil
}
