package agents

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/signetbus/signet/internal/config"
	"github.com/signetbus/signet/internal/trustfile"
	"github.com/signetbus/signet/internal/yamlerr"
)

// Config is signetd's configuration file (YAML). Every field can be left
// out; the defaults suit a Debian host. Every path (host_key,
// authorized_keys, policy, audit_log, fact_files, external_dir and the
// nats files) may start with "~/" (the home directory of the user signetd
// runs as) and, when relative, is relative to the config file's directory,
// as in the client's config.
type Config struct {
	// Identity is this host's name on the bus; default the hostname.
	Identity string `yaml:"identity"`
	// Collective is the subject prefix shared by the fleet; default "signet".
	Collective string `yaml:"collective"`
	// NATS says how to reach the broker.
	NATS NATSConfig `yaml:"nats"`
	// HostKey is the responder's ed25519 key, created when missing;
	// default /etc/signet/host_key.
	HostKey string `yaml:"host_key"`
	// HostCertificate, when set, is a host certificate of HostKey
	// (ssh-keygen -s CA -h -I ID -n IDENTITY host_key.pub) that signetd
	// presents with every reply, so clients that trust the CA for this
	// identity (a known_hosts @cert-authority line) need no pinned key.
	HostCertificate string `yaml:"host_certificate"`
	// AuthorizedKeys lists trusted operator keys with their roles;
	// default /etc/signet/authorized_keys.
	AuthorizedKeys string `yaml:"authorized_keys"`
	// Policy maps roles to allowed actions; default /etc/signet/policy.yaml.
	Policy string `yaml:"policy"`
	// AuditLog is the JSON-lines audit log; default /var/log/signet/audit.jsonl.
	AuditLog string `yaml:"audit_log"`
	// Audit configures the audit log's checkpoints and shipping.
	Audit AuditConfig `yaml:"audit"`
	// Facts are static facts, such as zone and env. They win over built-in
	// and file facts.
	Facts map[string]string `yaml:"facts"`
	// FactFiles are glob patterns of YAML or JSON fact files.
	FactFiles []string `yaml:"fact_files"`
	// Classes are role names for -C filters, such as "web".
	Classes []string `yaml:"classes"`
	// MaxRequestBytes refuses larger requests; default 65536.
	MaxRequestBytes int `yaml:"max_request_bytes"`
	// MaxTTL refuses requests valid for longer; default 10m.
	MaxTTL Duration `yaml:"max_ttl"`
	// ClockSkew is the tolerated clock difference with the signer; default 30s.
	ClockSkew Duration `yaml:"clock_skew"`
	// ActionTimeout bounds each action unless its plugin declares another;
	// default 5m.
	ActionTimeout Duration `yaml:"action_timeout"`
	// MaxConcurrent bounds actions running at once; default 8.
	MaxConcurrent int `yaml:"max_concurrent"`
	// ReplayCacheSize bounds the request ids this host remembers to refuse
	// replays; default 100000. Only requests that passed authentication,
	// policy and validation take space; when it is full new requests are
	// refused as busy until old ones expire.
	ReplayCacheSize int `yaml:"replay_cache_size"`
	// ReplayKeyShare is the fraction (0 to 1) of the replay cache one
	// signing key may fill, so a busy or hostile key cannot lock the
	// others out; default 0.25.
	ReplayKeyShare float64 `yaml:"replay_key_share"`
	// FloodWindow is the window over which messages that do not
	// authenticate (garbage, bad or untrusted signatures, oversized) are
	// counted; default 10s.
	FloodWindow Duration `yaml:"flood_window"`
	// FloodRecords is how many such messages per window are audited and
	// logged one by one; the rest are counted in one "suppressed" audit
	// record and one log line per window; default 20.
	FloodRecords int `yaml:"flood_records"`
	// FloodReplies is how many such messages per window get a signed
	// refusal (signing for anyone who asks is an amplifier); default 20.
	FloodReplies int `yaml:"flood_replies"`
	// RegistryTTL is how long the registry keeps this host after its last
	// refresh; default 90s (refreshed every third of it).
	RegistryTTL Duration `yaml:"registry_ttl"`
	// ShutdownTimeout bounds the wait for in-flight actions on stop; default 5m.
	ShutdownTimeout Duration `yaml:"shutdown_timeout"`
	// RevokedKeys is a file of revoked public keys, one per line, in the
	// plain format OpenSSH's RevokedKeys accepts (# comments); requests
	// signed by them are refused. Empty: none. A named file that cannot be
	// read stops start-up and reload: the list is never silently dropped.
	RevokedKeys string `yaml:"revoked_keys"`
	// RevocationMaxAge is how old the revocation list an admin distributes
	// over the broker (signet revoke) may be before this host refuses
	// callers whose roles the policy lists in fresh_revocation_roles; the
	// age counts from the list's signing time; default 24h.
	RevocationMaxAge Duration `yaml:"revocation_max_age"`
	// ControlState is where this host keeps the last revocation list and
	// lock set it accepted, so that after a restart it still refuses an
	// older one a broker user puts back; default control.json beside the
	// host key (/etc/signet/control.json). "none" keeps them in memory only.
	ControlState string `yaml:"control_state"`
	// Plugins enables plugins by name, each with its own settings (see
	// docs/plugins). A plugin not listed is not enabled. rpcutil is always on.
	Plugins map[string]yaml.Node `yaml:"plugins"`
	// ExternalDir holds external plugins (NAME.json + executable NAME);
	// empty disables them.
	ExternalDir string `yaml:"external_dir"`
	// Log configures operational logs (not the audit log).
	Log LogConfig `yaml:"log"`
	// MetricsListen serves Prometheus metrics on http://ADDR/metrics, for
	// example 127.0.0.1:9464; empty (the default) serves none. It must be
	// a loopback address unless MetricsAllowRemote.
	MetricsListen string `yaml:"metrics_listen"`
	// MetricsAllowRemote allows a MetricsListen address that is not a
	// loopback one (the metrics name agents, actions and refusal reasons:
	// expose them only to the monitoring network); default false.
	MetricsAllowRemote bool `yaml:"metrics_allow_remote"`

	file string // the file it was loaded from, for errors
}

// NATSConfig says how to reach the broker. The client's config shares it,
// so it lives below both sides, in internal/config.
type NATSConfig = config.NATS

// AuditConfig configures the hash-chained audit log's signed checkpoints
// and its copy on the broker (see docs/operations.md, "Audit shipping and
// verification").
type AuditConfig struct {
	// Ship copies every audit line to the broker's JetStream stream
	// signet_audit_COLLECTIVE; default true. The state file AUDIT_LOG.shipped
	// remembers what the broker acknowledged.
	Ship *bool `yaml:"ship"`
	// CheckpointRecords writes a signed checkpoint after this many records;
	// default 1000.
	CheckpointRecords int `yaml:"checkpoint_records"`
	// CheckpointInterval writes a signed checkpoint at this interval, even
	// when idle: the beat lets a verifier notice a copy whose tail was cut;
	// default 5m.
	CheckpointInterval Duration `yaml:"checkpoint_interval"`
}

// ShipOn reports whether the audit log is shipped (Ship, default true).
func (a AuditConfig) ShipOn() bool { return a.Ship == nil || *a.Ship }

// LogConfig configures operational logging.
type LogConfig struct {
	// Level is debug, info, warn or error; default info.
	Level string `yaml:"level"`
	// Format is json, text or auto (text on a terminal); default auto.
	Format string `yaml:"format"`
}

// Duration is a time.Duration written as "90s" in YAML, shared with the
// client's config (internal/config).
type Duration = config.Duration

// LoadConfig reads the config file strictly (an unknown key is an error)
// and applies SIGNETD_* environment overrides. An empty path means defaults
// and environment only. The config names the trust files, so it is a
// trust input itself: it is refused when others can write it (see
// trustfile).
func LoadConfig(path string) (*Config, error) {
	cfg := &Config{}
	if path != "" {
		b, err := trustfile.ReadFile(path, trustfile.Options{What: "config"})
		if err != nil {
			return nil, err
		}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		dec.KnownFields(true)
		if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) { // an empty file is the defaults
			return nil, fmt.Errorf("config: %w", yamlerr.Explain(path, b, err))
		}
		cfg.file = path
		base, err := filepath.Abs(filepath.Dir(path))
		if err != nil {
			return nil, fmt.Errorf("config %s: %w", path, err)
		}
		cfg.resolvePaths(base)
	}
	if err := cfg.applyEnv(os.Getenv); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	return cfg, nil
}

// resolvePaths reads every path key as the client's config does
// (config.ResolvePath): "~/" is the home directory, and a relative path
// is relative to the config file's directory base.
func (c *Config) resolvePaths(base string) {
	for _, p := range []*string{&c.HostKey, &c.AuthorizedKeys, &c.Policy, &c.AuditLog, &c.ExternalDir} {
		*p = config.ResolvePath(base, *p, "")
	}
	for i := range c.FactFiles {
		c.FactFiles[i] = config.ResolvePath(base, c.FactFiles[i], "")
	}
	c.NATS.ResolvePaths(base)
}

func (c *Config) applyEnv(getenv func(string) string) error {
	if v := getenv("SIGNETD_IDENTITY"); v != "" {
		c.Identity = v
	}
	if v := getenv("SIGNETD_COLLECTIVE"); v != "" {
		c.Collective = v
	}
	if v := getenv("SIGNETD_NATS_URL"); v != "" {
		c.NATS.URLs = config.SplitURLs(v)
	}
	if v := getenv("SIGNETD_LOG_LEVEL"); v != "" {
		c.Log.Level = v
	}
	if v := getenv("SIGNETD_MAX_CONCURRENT"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("SIGNETD_MAX_CONCURRENT: %q is not a number", v)
		}
		c.MaxConcurrent = n
	}
	return nil
}

func (c *Config) setDefaults() {
	if c.Identity == "" {
		c.Identity, _ = os.Hostname()
	}
	if c.Collective == "" {
		c.Collective = "signet"
	}
	if len(c.NATS.URLs) == 0 {
		c.NATS.URLs = []string{"nats://127.0.0.1:4222"}
	}
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&c.HostKey, "/etc/signet/host_key")
	def(&c.AuthorizedKeys, "/etc/signet/authorized_keys")
	def(&c.Policy, "/etc/signet/policy.yaml")
	def(&c.AuditLog, "/var/log/signet/audit.jsonl")
	def(&c.ControlState, filepath.Join(filepath.Dir(c.HostKey), "control.json"))
	dur := func(d *Duration, v time.Duration) {
		if *d == 0 {
			*d = Duration(v)
		}
	}
	dur(&c.MaxTTL, 10*time.Minute)
	dur(&c.ClockSkew, 30*time.Second)
	dur(&c.ActionTimeout, 5*time.Minute)
	dur(&c.RegistryTTL, 90*time.Second)
	dur(&c.ShutdownTimeout, 5*time.Minute)
	dur(&c.RevocationMaxAge, 24*time.Hour)
	if c.MaxRequestBytes == 0 {
		c.MaxRequestBytes = 64 << 10
	}
	if c.MaxConcurrent == 0 {
		c.MaxConcurrent = 8
	}
	if c.ReplayCacheSize == 0 {
		c.ReplayCacheSize = 100000
	}
	if c.ReplayKeyShare == 0 {
		c.ReplayKeyShare = 0.25
	}
	dur(&c.FloodWindow, 10*time.Second)
	dur(&c.Audit.CheckpointInterval, 5*time.Minute)
	if c.Audit.CheckpointRecords == 0 {
		c.Audit.CheckpointRecords = 1000
	}
	if c.FloodRecords == 0 {
		c.FloodRecords = 20
	}
	if c.FloodReplies == 0 {
		c.FloodReplies = 20
	}
}

// pluginConfig converts a plugin's YAML section to JSON for
// plugins.DecodeConfig.
func pluginConfig(n yaml.Node) (json.RawMessage, error) {
	if n.Kind == 0 || (n.Kind == yaml.ScalarNode && (n.Tag == "!!null" || n.Value == "")) {
		return nil, nil
	}
	var v any
	if err := n.Decode(&v); err != nil {
		return nil, err
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("line %d: %w", n.Line, err)
	}
	return b, nil
}
