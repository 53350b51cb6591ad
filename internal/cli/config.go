package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
	"golang.org/x/crypto/ssh"

	"github.com/signetbus/signet/bus"
	"github.com/signetbus/signet/internal/config"
	"github.com/signetbus/signet/internal/yamlerr"
	"github.com/signetbus/signet/workflows/release"
)

// ClientConfig is the operator's config file (YAML), found at $SIGNET_CONFIG
// or ~/.config/signet/client.yaml. Every field may be overridden by an
// environment profile and by SIGNET_* variables.
type ClientConfig struct {
	// Collective is the subject prefix of the fleet; default "signet".
	Collective string `yaml:"collective"`
	// User is the operator name carried in requests; default $USER.
	User string `yaml:"user"`
	// Key is the signing key: a private key file path, or "agent" to use the
	// ed25519 key held by the ssh-agent at $SSH_AUTH_SOCK (hardware keys
	// included). Default ~/.config/signet/id_ed25519, where `signet keygen`
	// writes; when that file does not exist and ~/.ssh/id_ed25519 does,
	// that key is used and signet says so on stderr.
	Key string `yaml:"key"`
	// keyNote, when set, is said on stderr before signing: which key the
	// default fell back to.
	keyNote string
	// AgentKey picks one agent key by "SHA256:..." fingerprint or .pub file
	// when the agent holds several.
	AgentKey string `yaml:"agent_key"`
	// KnownHosts lists the responders' host keys; default
	// ~/.config/signet/known_hosts. Replies from other hosts are not trusted.
	KnownHosts string `yaml:"known_hosts"`
	// NATS says how to reach the broker.
	NATS config.NATS `yaml:"nats"`
	// Timeout bounds the wait for replies; default 10s.
	Timeout config.Duration `yaml:"timeout"`
	// DiscoveryTimeout bounds broadcast discovery without a registry; default 2s.
	DiscoveryTimeout config.Duration `yaml:"discovery_timeout"`
	// TTL is how long a signed request stays valid; default 60s.
	TTL config.Duration `yaml:"ttl"`
	// Apps is the directory of app files for deploy; default ./apps.
	Apps string `yaml:"apps"`
	// Release configures `signet release`: ticket systems, chat and mail
	// (see docs/releases.md). A profile's release section replaces this one
	// whole, so a dev run never needs production credentials.
	Release release.Config `yaml:"release"`
	// ResumeKeys lists, one authorized_keys line each ("ssh-ed25519 AAAA...
	// bob@bastion"), the operators' keys whose runs this operator may
	// resume. Run state on the broker is signed by the key of the operator
	// who ran it; --resume refuses a state whose signature does not verify
	// or whose signer is neither this operator's key nor listed here.
	ResumeKeys []string `yaml:"resume_keys"`
	// Runs is where deploy and workflow run logs are written; default
	// ~/.local/state/signet/runs.
	Runs string `yaml:"runs"`
	// Protocol is the protocol version requests are signed in; default
	// the newest this signet speaks. Set it to the previous one (this
	// release speaks both) while hosts of the previous release remain:
	// see docs/upgrading.md.
	Protocol int `yaml:"protocol"`
	// Environments are profiles (dev, dr, prod): each may set its own
	// collective, broker, key and known hosts. Select with --env or SIGNET_ENV.
	Environments map[string]*ClientConfig `yaml:"environments"`
}

// loadClientConfig reads the config, applies the profile env (if any) and
// SIGNET_* overrides, and fills in defaults.
func loadClientConfig(path, env string, getenv func(string) string) (*ClientConfig, error) {
	explicit := path != ""
	if path == "" {
		path = getenv("SIGNET_CONFIG")
		explicit = path != ""
	}
	if path == "" {
		if home, err := os.UserHomeDir(); err == nil {
			path = filepath.Join(home, ".config", "signet", "client.yaml")
		}
	}
	cfg := &ClientConfig{}
	if path != "" {
		b, err := os.ReadFile(path)
		switch {
		case err == nil:
			dec := yaml.NewDecoder(bytes.NewReader(b))
			dec.KnownFields(true)
			if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
				return nil, usageErrorf("config: %v", yamlerr.Explain(path, b, err))
			}
			base := filepath.Dir(path)
			cfg.resolve(base)
			for _, e := range cfg.Environments {
				if e != nil {
					e.resolve(base)
				}
			}
		case errors.Is(err, fs.ErrNotExist) && !explicit:
		case errors.Is(err, fs.ErrNotExist):
			return nil, usageErrorf("config: %v", err)
		default:
			return nil, fmt.Errorf("config: %w", err)
		}
	}
	if env == "" {
		env = getenv("SIGNET_ENV")
	}
	if env != "" {
		p, ok := cfg.Environments[env]
		switch {
		case ok && p != nil:
			cfg.overlay(p)
		case len(cfg.Environments) > 0:
			// Profiles are in use: an unknown name is a typo, not a reason
			// to fall back to the base (perhaps production) settings.
			return nil, usageErrorf("no environment %q in %s (profiles: %s)", env, path, strings.Join(slices.Sorted(maps.Keys(cfg.Environments)), ", "))
		}
		// Without profiles, --env only names the deploy environment.
	}
	over := func(dst *string, name string) {
		if v := getenv(name); v != "" {
			*dst = v
		}
	}
	over(&cfg.Collective, "SIGNET_COLLECTIVE")
	over(&cfg.User, "SIGNET_USER")
	over(&cfg.Key, "SIGNET_KEY")
	over(&cfg.KnownHosts, "SIGNET_KNOWN_HOSTS")
	if v := getenv("SIGNET_NATS_URL"); v != "" {
		cfg.NATS.URLs = config.SplitURLs(v)
	}
	cfg.defaults(getenv)
	if cfg.Protocol != 0 {
		if err := bus.CheckClientProtocol(cfg.Protocol); err != nil {
			return nil, usageErrorf("config: protocol: %v", err)
		}
	}
	return cfg, nil
}

// resumeKeys parses ResumeKeys.
func (c *ClientConfig) resumeKeys() ([]ssh.PublicKey, error) {
	var out []ssh.PublicKey
	for i, line := range c.ResumeKeys {
		k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
		if err != nil {
			return nil, usageErrorf("resume_keys entry %d: want an authorized_keys line such as \"ssh-ed25519 AAAA... bob@bastion\": %v", i+1, err)
		}
		out = append(out, k)
	}
	return out, nil
}

// resolve reads every path of the file as signetd reads its own
// (config.ResolvePath): "~/" is the home directory and a relative path is
// relative to the config file.
func (c *ClientConfig) resolve(base string) {
	abs := func(p *string) { *p = config.ResolvePath(base, *p, "") }
	if c.Key != "agent" {
		abs(&c.Key)
	}
	abs(&c.AgentKey)
	abs(&c.KnownHosts)
	abs(&c.Apps)
	abs(&c.Runs)
	c.NATS.ResolvePaths(base)
	c.Release.Resolve(base)
}

func (c *ClientConfig) overlay(p *ClientConfig) {
	set := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	set(&c.Collective, p.Collective)
	set(&c.User, p.User)
	set(&c.Key, p.Key)
	set(&c.AgentKey, p.AgentKey)
	set(&c.KnownHosts, p.KnownHosts)
	set(&c.Apps, p.Apps)
	set(&c.Runs, p.Runs)
	c.Release.Overlay(&p.Release)
	if len(p.NATS.URLs) > 0 || p.NATS.Creds != "" || p.NATS.User != "" || p.NATS.NKeyFile != "" || p.NATS.JetStreamDomain != "" {
		c.NATS = p.NATS
	}
	if len(p.ResumeKeys) > 0 {
		c.ResumeKeys = p.ResumeKeys
	}
	if p.Timeout != 0 {
		c.Timeout = p.Timeout
	}
	if p.DiscoveryTimeout != 0 {
		c.DiscoveryTimeout = p.DiscoveryTimeout
	}
	if p.TTL != 0 {
		c.TTL = p.TTL
	}
	if p.Protocol != 0 {
		c.Protocol = p.Protocol
	}
}

func (c *ClientConfig) defaults(getenv func(string) string) {
	home, _ := os.UserHomeDir()
	if c.Collective == "" {
		c.Collective = "signet"
	}
	if c.User == "" {
		c.User = getenv("USER")
		if c.User == "" {
			if u, err := user.Current(); err == nil {
				c.User = u.Username
			}
		}
	}
	if c.Key == "" {
		c.Key, c.keyNote = defaultKey(home)
	}
	if c.KnownHosts == "" {
		c.KnownHosts = filepath.Join(home, ".config", "signet", "known_hosts")
	}
	// SIGNET_KEY and SIGNET_KNOWN_HOSTS may say "~/" too.
	if c.Key != "agent" {
		c.Key = config.ResolvePath("", c.Key, home)
	}
	c.KnownHosts = config.ResolvePath("", c.KnownHosts, home)
	if len(c.NATS.URLs) == 0 {
		c.NATS.URLs = []string{"nats://127.0.0.1:4222"}
	}
	if c.Timeout == 0 {
		c.Timeout = config.Duration(10 * time.Second)
	}
	if c.DiscoveryTimeout == 0 {
		c.DiscoveryTimeout = config.Duration(2 * time.Second)
	}
	if c.TTL == 0 {
		c.TTL = config.Duration(60 * time.Second)
	}
	if c.Apps == "" {
		c.Apps = "apps"
	}
	if c.Runs == "" {
		c.Runs = filepath.Join(home, ".local", "state", "signet", "runs")
	}
}

// defaultKey is the key the client signs with when none is configured:
// the one `signet keygen` writes (DefaultKeyPath). An operator who has an
// ed25519 key in ~/.ssh only (the old default) keeps signing with it, and
// note says so.
func defaultKey(home string) (path, note string) {
	path = filepath.Join(home, DefaultKeyPath)
	if _, err := os.Stat(path); err == nil {
		return path, ""
	}
	legacy := filepath.Join(home, ".ssh", "id_ed25519")
	if _, err := os.Stat(legacy); err == nil {
		return legacy, fmt.Sprintf("signing with %s: there is no key at ~/%s (set key: in the client config to choose one)", legacy, DefaultKeyPath)
	}
	return path, ""
}

// DefaultKeyPath is where `signet keygen` writes the operator's key and
// where the client looks for it, relative to the home directory.
const DefaultKeyPath = ".config/signet/id_ed25519"
