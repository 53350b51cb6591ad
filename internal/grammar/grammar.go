// Package grammar holds the grammars of the names that several signet
// packages check: agent, action and input names, host identities, fact
// keys and roles. Each grammar is one function here, and every package that
// checks such a name calls it, so the client, the host, the plugin loaders,
// the policy and the workflows cannot drift apart.
//
// The package sits below every other signet package and imports only the
// standard library.
package grammar

import (
	"fmt"
	"regexp"
)

var (
	nameRe     = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)
	identityRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$`)
	factKeyRe  = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$`)
	roleRe     = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,31}$`)
	operatorRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$`)
)

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

// CheckOperator validates an operator's name: the name= of a trusted key,
// or the key ID of a user certificate.
func CheckOperator(n string) error {
	if !operatorRe.MatchString(n) {
		return fmt.Errorf("invalid operator name %q: want letters, digits and ._@+- (at most 64)", n)
	}
	return nil
}
