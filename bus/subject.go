package bus

import (
	"fmt"
	"regexp"
)

var (
	collectiveRe = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	tokenRe      = regexp.MustCompile(`^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,252}$`)
	nameRe       = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)
)

// CheckCollective validates a collective name: it becomes a subject prefix
// and part of the registry bucket name.
func CheckCollective(c string) error {
	if !collectiveRe.MatchString(c) {
		return fmt.Errorf("invalid collective %q: want 1-64 of A-Z a-z 0-9 _ -", c)
	}
	return nil
}

// CheckIdentity validates a host identity: a host name or FQDN.
func CheckIdentity(id string) error {
	if !tokenRe.MatchString(id) {
		return fmt.Errorf("invalid identity %q: want a host name (letters, digits, . _ -)", id)
	}
	return nil
}

// CheckName validates an agent or action name.
func CheckName(kind, n string) error {
	if !nameRe.MatchString(n) {
		return fmt.Errorf("invalid %s name %q: want lowercase letters, digits and _", kind, n)
	}
	return nil
}

// AgentSubject is where requests for an agent are broadcast.
func AgentSubject(collective, agent string) string {
	return collective + ".agent." + agent
}

// NodeSubject is where direct requests for one host are sent.
func NodeSubject(collective, identity string) string {
	return collective + ".node." + identity
}

// RegistryBucket is the JetStream key-value bucket responders register in.
func RegistryBucket(collective string) string {
	return "signet_registry_" + collective
}
