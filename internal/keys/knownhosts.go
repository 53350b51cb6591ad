package keys

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/signetbus/signet/internal/grammar"
)

// KnownHosts maps responder identities to their host keys (file lines:
// "IDENTITY ssh-ed25519 AAAA... [comment]"). One identity has one key; an
// identity listed twice is an error rather than a silent choice.
type KnownHosts struct {
	keys map[string]ssh.PublicKey
}

// LoadKnownHosts reads a known_hosts file; see ParseKnownHosts.
func LoadKnownHosts(path string) (*KnownHosts, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("keys: known hosts: %w", err)
	}
	defer f.Close()
	k, err := ParseKnownHosts(f)
	var pe *ParseError
	if errors.As(err, &pe) {
		pe.Path = path
	}
	return k, err
}

// ParseKnownHosts reads lines "IDENTITY ssh-ed25519 AAAA... [comment]".
// Blank lines and # comments are allowed. Only ed25519 host keys are
// accepted.
func ParseKnownHosts(r io.Reader) (*KnownHosts, error) {
	k := &KnownHosts{keys: map[string]ssh.PublicKey{}}
	lines := map[string]int{}
	err := eachLine(r, func(n int, line string) error {
		fields := strings.Fields(line)
		if len(fields) < 2 {
			return errors.New("want IDENTITY ssh-ed25519 AAAA... [comment]")
		}
		identity := fields[0]
		if strings.HasPrefix(identity, "ssh-") || strings.HasPrefix(identity, "sk-") || strings.HasPrefix(identity, "ecdsa-") {
			return fmt.Errorf("line starts with key type %s: want IDENTITY ssh-ed25519 AAAA... [comment]", identity)
		}
		if err := grammar.CheckIdentity(identity); err != nil {
			return err
		}
		fields = fields[1:]
		if len(fields) < 2 {
			return fmt.Errorf("identity %s: want a key type and base64 key after it", identity)
		}
		blob, err := base64.StdEncoding.DecodeString(fields[1])
		if err != nil {
			return fmt.Errorf("identity %s: host key is not base64: %w", identity, err)
		}
		pub, err := ssh.ParsePublicKey(blob)
		if err != nil {
			return fmt.Errorf("identity %s: bad host key: %w", identity, err)
		}
		if pub.Type() != fields[0] {
			return fmt.Errorf("identity %s: key type %q does not match the key, which is %s", identity, fields[0], pub.Type())
		}
		if err := checkType(pub); err != nil {
			return fmt.Errorf("identity %s: %w", identity, err)
		}
		if prev, dup := lines[identity]; dup {
			return fmt.Errorf("identity %s is already listed on line %d", identity, prev)
		}
		lines[identity] = n
		k.keys[identity] = pub
		return nil
	})
	if err != nil {
		return nil, err
	}
	return k, nil
}

// Lookup returns the host key pinned for identity.
func (k *KnownHosts) Lookup(identity string) (ssh.PublicKey, bool) {
	if k == nil {
		return nil, false
	}
	pub, ok := k.keys[identity]
	return pub, ok
}

// Len returns the number of identities.
func (k *KnownHosts) Len() int {
	if k == nil {
		return 0
	}
	return len(k.keys)
}

// FormatKnownHost returns the known_hosts line for identity, ending in a
// newline, ready to append to the file.
func FormatKnownHost(identity string, pub ssh.PublicKey) string {
	return identity + " " + string(ssh.MarshalAuthorizedKey(pub))
}
