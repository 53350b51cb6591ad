package bus

import (
	"errors"
	"fmt"

	"github.com/signetbus/signet/internal/grammar"
	"github.com/signetbus/signet/internal/shard"
)

// isID reports whether id is exactly 32 lowercase hex digits
// (^[0-9a-f]{32}$). A loop, not a regexp: it runs on every request and
// reply, and compiling the regexp at init cost every command.
func isID(id string) bool {
	if len(id) != 32 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// isCollective reports whether c is 1-64 of A-Z a-z 0-9 _ -
// (^[A-Za-z0-9_-]{1,64}$).
func isCollective(c string) bool {
	if len(c) < 1 || len(c) > 64 {
		return false
	}
	for i := 0; i < len(c); i++ {
		b := c[i]
		if !(b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '_' || b == '-') {
			return false
		}
	}
	return true
}

// ErrBadID is wrapped by CheckID's error.
var ErrBadID = errors.New("bus: malformed request id")

// CheckID validates a request id: exactly 32 lowercase hex digits (128
// random bits, as NewID makes). Responders refuse requests, and clients
// replies, whose id is anything else: an empty id would let one signed
// reply stand for any request.
func CheckID(id string) error {
	if !isID(id) {
		if len(id) > 64 {
			return fmt.Errorf("%w (%d bytes): want 32 lowercase hex digits", ErrBadID, len(id))
		}
		return fmt.Errorf("%w %q: want 32 lowercase hex digits", ErrBadID, id)
	}
	return nil
}

// CheckCollective validates a collective name: it becomes a subject prefix
// and part of the registry bucket name.
func CheckCollective(c string) error {
	if !isCollective(c) {
		return fmt.Errorf("invalid collective %q: want 1-64 of A-Z a-z 0-9 _ -", c)
	}
	return nil
}

// CheckIdentity validates a host identity: a host name or FQDN (the one
// grammar, internal/grammar.CheckIdentity).
func CheckIdentity(id string) error { return grammar.CheckIdentity(id) }

// CheckName validates an agent or action name (the one grammar,
// internal/grammar.CheckName: lowercase letters, digits and _).
func CheckName(kind, n string) error { return grammar.CheckName(kind, n) }

// AgentSubject is where requests for an agent are broadcast.
func AgentSubject(collective, agent string) string {
	return collective + ".agent." + agent
}

// NodeSubject is where direct requests for one host are sent.
func NodeSubject(collective, identity string) string {
	return collective + ".node." + identity
}

// ShardSubject is where chunks of a large request are published once for
// the hosts of one shard: COLLECTIVE.shard.SIZE.N, N = shard.Of(identity,
// SIZE). A host listens on it for each size it lists in its registry
// entry (Registration.Shards).
func ShardSubject(collective string, size int, identity string) string {
	return shard.Subject(collective, size, identity)
}

// RegistryBucket is the JetStream key-value bucket responders register in.
func RegistryBucket(collective string) string {
	return "signet_registry_" + collective
}
