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
//
// A line "@cert-authority PATTERNS ssh-ed25519 AAAA... [comment]" trusts
// the host certificates that key signs, for the identities that PATTERNS
// (known_hosts syntax: comma-separated, * and ? wildcards, ! negates)
// matches.
type KnownHosts struct {
	keys map[string]ssh.PublicKey
	cas  []hostCA
}

type hostCA struct {
	patterns []string
	key      ssh.PublicKey
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
		switch identity {
		case "@cert-authority":
			ca, err := parseHostCA(fields[1:])
			if err != nil {
				return err
			}
			k.cas = append(k.cas, ca)
			return nil
		case "@revoked":
			return errors.New("@revoked is not supported: revoke host keys in signet's revocation list")
		}
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
		pub, err := parseKeyFields(fields[0], fields[1])
		if err != nil {
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

// parseKeyFields parses "ssh-ed25519" "AAAA..." into an ed25519 key.
func parseKeyFields(typ, b64 string) (ssh.PublicKey, error) {
	blob, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, fmt.Errorf("host key is not base64: %w", err)
	}
	pub, err := ssh.ParsePublicKey(blob)
	if err != nil {
		return nil, fmt.Errorf("bad host key: %w", err)
	}
	if pub.Type() != typ {
		return nil, fmt.Errorf("key type %q does not match the key, which is %s", typ, pub.Type())
	}
	if err := checkType(pub); err != nil {
		return nil, err
	}
	return pub, nil
}

// parseHostCA parses the rest of an @cert-authority line.
func parseHostCA(fields []string) (hostCA, error) {
	if len(fields) < 3 {
		return hostCA{}, errors.New("want @cert-authority PATTERNS ssh-ed25519 AAAA... [comment]")
	}
	var ca hostCA
	for p := range strings.SplitSeq(fields[0], ",") {
		if err := grammar.CheckIdentity(strings.NewReplacer("*", "x", "?", "x").Replace(strings.TrimPrefix(p, "!"))); err != nil {
			return hostCA{}, fmt.Errorf("@cert-authority pattern %q: want host names with * and ? wildcards, ! to exclude", p)
		}
		ca.patterns = append(ca.patterns, p)
	}
	pub, err := parseKeyFields(fields[1], fields[2])
	if err != nil {
		return hostCA{}, fmt.Errorf("@cert-authority %s: %w", fields[0], err)
	}
	ca.key = pub
	return ca, nil
}

// HostCA reports whether an @cert-authority line trusts ca to certify
// identity: its key is ca, one of its patterns matches identity and no
// negated one does.
func (k *KnownHosts) HostCA(identity string, ca ssh.PublicKey) bool {
	if k == nil {
		return false
	}
	blob := string(ca.Marshal())
	for _, c := range k.cas {
		if string(c.key.Marshal()) == blob && matchPatterns(c.patterns, identity) {
			return true
		}
	}
	return false
}

func matchPatterns(patterns []string, s string) bool {
	matched := false
	for _, p := range patterns {
		if neg, ok := strings.CutPrefix(p, "!"); ok {
			if wildMatch(neg, s) {
				return false
			}
		} else if wildMatch(p, s) {
			matched = true
		}
	}
	return matched
}

// wildMatch matches s against p, where * is any run and ? any one byte,
// case-insensitively as known_hosts does.
func wildMatch(p, s string) bool {
	p, s = strings.ToLower(p), strings.ToLower(s)
	for len(p) > 0 {
		switch p[0] {
		case '*':
			for i := len(s); i >= 0; i-- {
				if wildMatch(p[1:], s[i:]) {
					return true
				}
			}
			return false
		case '?':
			if s == "" {
				return false
			}
		default:
			if s == "" || s[0] != p[0] {
				return false
			}
		}
		p, s = p[1:], s[1:]
	}
	return s == ""
}

// Covers reports whether a reply from identity could be verified at all:
// its key is pinned, or an @cert-authority line's patterns name it.
func (k *KnownHosts) Covers(identity string) bool {
	if k == nil {
		return false
	}
	if _, ok := k.keys[identity]; ok {
		return true
	}
	for _, c := range k.cas {
		if matchPatterns(c.patterns, identity) {
			return true
		}
	}
	return false
}

// Lookup returns the host key pinned for identity.
func (k *KnownHosts) Lookup(identity string) (ssh.PublicKey, bool) {
	if k == nil {
		return nil, false
	}
	pub, ok := k.keys[identity]
	return pub, ok
}

// Len returns the number of identities pinned and host authorities.
func (k *KnownHosts) Len() int {
	if k == nil {
		return 0
	}
	return len(k.keys) + len(k.cas)
}

// FormatKnownHost returns the known_hosts line for identity, ending in a
// newline, ready to append to the file.
func FormatKnownHost(identity string, pub ssh.PublicKey) string {
	return identity + " " + string(ssh.MarshalAuthorizedKey(pub))
}
