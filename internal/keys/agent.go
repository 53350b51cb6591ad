package keys

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// ErrNoAgentKey is returned by AgentSigner when the agent holds no key
// signet can use, or none matching the one asked for.
var ErrNoAgentKey = errors.New("keys: no usable key in ssh-agent")

// AgentSigner picks the ed25519 (or sk-ssh-ed25519@openssh.com) key held
// by an ssh-agent connection. want selects by "SHA256:..." fingerprint or
// by the contents of a .pub file; empty want means: the only ed25519 key,
// else an error listing the candidates.
func AgentSigner(conn io.ReadWriter, want string) (ssh.Signer, error) {
	signers, err := agent.NewClient(conn).Signers()
	if err != nil {
		return nil, fmt.Errorf("keys: list ssh-agent keys: %w", err)
	}
	var usable []ssh.Signer
	var other []string
	var certs []*ssh.Certificate
	for _, s := range signers {
		if c := agentCert(s.PublicKey()); c != nil {
			certs = append(certs, c)
			continue
		}
		if acceptedType(s.PublicKey().Type()) {
			usable = append(usable, s)
		} else {
			other = append(other, describeKey(s.PublicKey()))
		}
	}
	if len(usable) == 0 {
		if len(signers) == 0 {
			return nil, fmt.Errorf("%w: the agent holds no keys\nhint: ssh-add ~/.ssh/id_ed25519", ErrNoAgentKey)
		}
		return nil, fmt.Errorf("%w: the agent holds no ed25519 key, only %s\nhint: create one with ssh-keygen -t ed25519 and ssh-add it", ErrNoAgentKey, strings.Join(other, ", "))
	}

	want = strings.TrimSpace(want)
	if want == "" {
		if len(usable) == 1 {
			return withAgentCert(usable[0], certs)
		}
		return nil, fmt.Errorf("keys: the agent holds %d ed25519 keys, choose one by fingerprint: %s", len(usable), candidates(usable))
	}

	match, err := matcher(want)
	if err != nil {
		return nil, err
	}
	for _, s := range usable {
		if match(s.PublicKey()) {
			return withAgentCert(s, certs)
		}
	}
	return nil, fmt.Errorf("%w: the agent does not hold %s; it holds %s", ErrNoAgentKey, wantName(want), candidates(usable))
}

// agentCert returns the certificate an agent key is, or nil.
func agentCert(pub ssh.PublicKey) *ssh.Certificate {
	k, ok := pub.(*agent.Key)
	if !ok || (k.Format != ssh.CertAlgoED25519v01 && k.Format != ssh.CertAlgoSKED25519v01) {
		return nil
	}
	parsed, err := ssh.ParsePublicKey(k.Blob)
	if err != nil {
		return nil
	}
	c, _ := parsed.(*ssh.Certificate)
	return c
}

// withAgentCert returns s presenting the user certificate the agent holds
// for its key (ssh-add loads KEY-cert.pub beside KEY), the one valid the
// longest when there are several, or s itself when there is none. The
// agent signs with the key; the certificate travels in the request.
func withAgentCert(s ssh.Signer, certs []*ssh.Certificate) (ssh.Signer, error) {
	var best *ssh.Certificate
	blob := s.PublicKey().Marshal()
	for _, c := range certs {
		if c.CertType == ssh.UserCert && bytes.Equal(c.Key.Marshal(), blob) && (best == nil || c.ValidBefore > best.ValidBefore) {
			best = c
		}
	}
	if best == nil {
		return s, nil
	}
	return certify(s, best, "in ssh-agent")
}

// matcher turns want (a fingerprint or a public key line) into a predicate.
func matcher(want string) (func(ssh.PublicKey) bool, error) {
	if strings.HasPrefix(want, "SHA256:") {
		return func(pub ssh.PublicKey) bool { return Fingerprint(pub) == want }, nil
	}
	pub, _, _, rest, err := ssh.ParseAuthorizedKey([]byte(want))
	if err != nil {
		return nil, fmt.Errorf("keys: key %q is neither a SHA256: fingerprint nor a public key line: %w", truncate(want, 40), err)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, errors.New("keys: want holds more than one public key")
	}
	if err := checkType(pub); err != nil {
		return nil, err
	}
	blob := pub.Marshal()
	return func(p ssh.PublicKey) bool { return bytes.Equal(p.Marshal(), blob) }, nil
}

func wantName(want string) string {
	if strings.HasPrefix(want, "SHA256:") {
		return want
	}
	if pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(want)); err == nil {
		return Fingerprint(pub)
	}
	return truncate(want, 40)
}

func candidates(signers []ssh.Signer) string {
	names := make([]string, len(signers))
	for i, s := range signers {
		names[i] = describeKey(s.PublicKey())
	}
	return strings.Join(names, ", ")
}

// describeKey names a key for an operator: type, fingerprint and, for agent
// keys, the comment ssh-add recorded.
func describeKey(pub ssh.PublicKey) string {
	d := pub.Type() + " " + Fingerprint(pub)
	if k, ok := pub.(*agent.Key); ok && k.Comment != "" {
		d += " (" + k.Comment + ")"
	}
	return d
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
