// Package config holds the config-file types that signet (the client) and
// signetd (the host) share: how to reach the broker, and durations written
// as "90s". It sits below both sides, so the client never imports the host
// side (agents) for its config.
package config

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
	"go.yaml.in/yaml/v3"
)

// NATS says how to reach the broker.
type NATS struct {
	// URLs of the broker or cluster; default nats://127.0.0.1:4222.
	URLs []string `yaml:"urls"`
	// Creds is a NATS credentials file (JWT + nkey seed).
	Creds string `yaml:"creds"`
	// User and PasswordFile authenticate with a user name and password.
	User         string `yaml:"user"`
	PasswordFile string `yaml:"password_file"`
	// NKeyFile is a file holding a user nkey seed ("SU..."), as `signet
	// broker init` writes for each user (users/NAME.nk). It must not be
	// readable by group or others. With it the connection's inbox prefix
	// is InboxPrefix of the nkey unless InboxPrefix is set.
	NKeyFile string `yaml:"nkey_file"`
	// InboxPrefix is the prefix of this connection's reply subjects
	// (nats.go CustomInboxPrefix); default "_INBOX", or "_INBOX.<nkey>"
	// with NKeyFile. A locked-down broker lets each user subscribe only
	// under its own prefix, so no one reads another's replies.
	InboxPrefix string `yaml:"inbox_prefix"`
	// CAFile, CertFile and KeyFile configure TLS: CAFile is the CA the
	// broker's certificate must chain to; CertFile and KeyFile are a
	// client certificate, for a broker that verifies clients.
	CAFile   string `yaml:"ca_file"`
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// Replicas is how many copies JetStream keeps of the buckets and
	// streams signet creates (registry, run state, locks, control, audit):
	// 0, the default, is 3 on a cluster and 1 on a single broker; 1 to 5
	// sets it (a two-node cluster wants 1).
	Replicas int `yaml:"replicas"`
	// JetStreamDomain is the JetStream domain that holds the collective's
	// registry, run state, locks, control bucket, approvals and audit
	// stream, when it is not the broker's own: a client on the hub names a
	// DR site's domain ("dr", the DR broker's --domain) to reach it
	// through the leafnode. Empty is the connected broker's domain.
	JetStreamDomain string `yaml:"jetstream_domain"`
}

// SplitURLs reads a broker URL list as SIGNET_NATS_URL and
// SIGNETD_NATS_URL give it: comma-separated, spaces around the commas
// ignored ("nats://n1:4222, nats://n2:4222").
func SplitURLs(v string) []string {
	var out []string
	for _, u := range strings.Split(v, ",") {
		if u = strings.TrimSpace(u); u != "" {
			out = append(out, u)
		}
	}
	return out
}

// JetStream is the JetStream API of the configured domain on nc.
func (c NATS) JetStream(nc *nats.Conn) (jetstream.JetStream, error) {
	if c.JetStreamDomain != "" {
		return jetstream.NewWithDomain(nc, c.JetStreamDomain)
	}
	return jetstream.New(nc)
}

// AuthOptions turns the credentials and TLS settings into nats.go options;
// signetd and the signet CLI share it.
func (c NATS) AuthOptions() ([]nats.Option, error) {
	var opts []nats.Option
	if c.Creds != "" {
		opts = append(opts, nats.UserCredentials(c.Creds))
	}
	if c.User != "" {
		pw := ""
		if c.PasswordFile != "" {
			b, err := os.ReadFile(c.PasswordFile)
			if err != nil {
				return nil, fmt.Errorf("nats password: %w", err)
			}
			pw = strings.TrimSpace(string(b))
		}
		opts = append(opts, nats.UserInfo(c.User, pw))
	}
	if err := c.Check(); err != nil {
		return nil, err
	}
	if c.NKeyFile != "" {
		opt, err := nats.NkeyOptionFromSeed(c.NKeyFile)
		if err != nil {
			return nil, fmt.Errorf("nats nkey_file %s: %w", c.NKeyFile, err)
		}
		opts = append(opts, opt)
	}
	prefix := c.InboxPrefix
	if prefix == "" && c.NKeyFile != "" {
		pub, err := nkeyPublic(c.NKeyFile)
		if err != nil {
			return nil, err
		}
		prefix = InboxPrefix(pub)
	}
	if prefix != "" {
		opts = append(opts, nats.CustomInboxPrefix(prefix))
	}
	if c.CAFile != "" {
		opts = append(opts, nats.RootCAs(c.CAFile))
	}
	if c.CertFile != "" || c.KeyFile != "" {
		opts = append(opts, nats.ClientCert(c.CertFile, c.KeyFile))
	}
	return opts, nil
}

// Check validates the settings start-up and --check read alike: the
// nkey seed is private (0600) and is a user seed, and inbox_prefix is a
// subject prefix without wildcards.
func (c NATS) Check() error {
	if c.NKeyFile != "" {
		st, err := os.Stat(c.NKeyFile)
		if err != nil {
			return fmt.Errorf("nats nkey_file: %w", err)
		}
		if st.Mode().Perm()&0o077 != 0 {
			return fmt.Errorf("nats nkey_file %s is readable by others (mode %04o): chmod 600 it", c.NKeyFile, st.Mode().Perm())
		}
		if _, err := nkeyPublic(c.NKeyFile); err != nil {
			return err
		}
	}
	if c.InboxPrefix != "" && !validPrefix(c.InboxPrefix) {
		return fmt.Errorf("nats inbox_prefix %q: want dot-separated tokens of letters, digits, _ and -, without wildcards", c.InboxPrefix)
	}
	return nil
}

// InboxPrefix is the inbox prefix of the user with public nkey pub:
// "_INBOX." and the key. A locked-down broker lets that user subscribe
// under it only.
func InboxPrefix(pub string) string { return "_INBOX." + pub }

// nkeyPublic reads the public key of the nkey seed in path.
func nkeyPublic(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("nats nkey_file: %w", err)
	}
	kp, err := nkeys.FromSeed([]byte(strings.TrimSpace(string(b))))
	if err != nil {
		return "", fmt.Errorf("nats nkey_file %s: not a user nkey seed: %w", path, err)
	}
	defer kp.Wipe()
	return kp.PublicKey()
}

func validPrefix(p string) bool {
	for _, tok := range strings.Split(p, ".") {
		if tok == "" {
			return false
		}
		for i := 0; i < len(tok); i++ {
			b := tok[i]
			if !(b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '_' || b == '-') {
				return false
			}
		}
	}
	return true
}

// Duration is a time.Duration written as "90s" in YAML.
type Duration time.Duration

// UnmarshalYAML parses a duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration such as 90s or 5m", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

// D returns the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }
