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
	// CAFile, CertFile and KeyFile configure TLS.
	CAFile   string `yaml:"ca_file"`
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// Replicas is how many copies JetStream keeps of the buckets and
	// streams signet creates (registry, run state, locks, control, audit):
	// 0, the default, is 3 on a cluster and 1 on a single broker; 1 to 5
	// sets it (a two-node cluster wants 1).
	Replicas int `yaml:"replicas"`
	// JetStreamDomain is the JetStream domain that holds the collective's
	// registry, run state, locks, control bucket and audit stream, when it
	// is not the broker's own: a client on the hub names a DR site's
	// domain ("dr", the DR broker's --domain) to reach it through the
	// leafnode. Empty is the connected broker's domain.
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
	if c.CAFile != "" {
		opts = append(opts, nats.RootCAs(c.CAFile))
	}
	if c.CertFile != "" || c.KeyFile != "" {
		opts = append(opts, nats.ClientCert(c.CertFile, c.KeyFile))
	}
	return opts, nil
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
