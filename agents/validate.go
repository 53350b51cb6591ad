package agents

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/signetbus/signet/bus"
	"github.com/signetbus/signet/internal/audit"
	"github.com/signetbus/signet/internal/facts"
	"github.com/signetbus/signet/internal/keys"
	"github.com/signetbus/signet/internal/metrics"
	"github.com/signetbus/signet/internal/replicas"
)

// ErrConfig is wrapped by every error Validate returns: the config, not
// the host, is wrong.
var ErrConfig = errors.New("agents: invalid config")

// ConfigError names the config key at fault.
type ConfigError struct {
	// Key is the YAML key, dotted for nested ones: "registry_ttl", "nats.urls".
	Key string
	Msg string
}

func (e *ConfigError) Error() string { return e.Key + ": " + e.Msg }
func (e *ConfigError) Unwrap() error { return ErrConfig }

// Limits of the durations and sizes a config may set. A value outside
// them is an error naming the key, never a panic or a silent clamp later.
var (
	maxTTLRange          = durationRange{time.Second, 24 * time.Hour}
	clockSkewRange       = durationRange{time.Second, 10 * time.Minute}
	actionTimeoutRange   = durationRange{time.Second, 24 * time.Hour}
	registryTTLRange     = durationRange{5 * time.Second, time.Hour}
	shutdownTimeoutRange = durationRange{time.Second, 24 * time.Hour}
	maxRequestBytesRange = intRange{1 << 10, 8 << 20}
	maxConcurrentRange   = intRange{1, 1024}
	replayCacheRange     = intRange{1000, 10_000_000}
	floodWindowRange     = durationRange{time.Second, time.Hour}
	floodRecordsRange    = intRange{1, 100_000}
	floodRepliesRange    = intRange{1, 100_000}
	checkpointRecords    = intRange{1, 1_000_000}
	checkpointInterval   = durationRange{time.Second, 24 * time.Hour}
	// revocationMaxAgeRange: below a minute a list could not be re-signed
	// in time; above 90 days a revocation list would not be a check.
	revocationMaxAgeRange = durationRange{time.Minute, 90 * 24 * time.Hour}
)

// replayKeyShareMin is the smallest share of the replay cache one key may
// be given: below it, one operator's ordinary fan-out would be refused.
const replayKeyShareMin = 0.01

type durationRange struct{ min, max time.Duration }

func (r durationRange) check(key string, d Duration) error {
	if d.D() < r.min || d.D() > r.max {
		return &ConfigError{Key: key, Msg: fmt.Sprintf("must be between %s and %s, got %s", fmtDur(r.min), fmtDur(r.max), fmtDur(d.D()))}
	}
	return nil
}

type intRange struct{ min, max int }

func (r intRange) check(key string, n int) error {
	if n < r.min || n > r.max {
		return &ConfigError{Key: key, Msg: fmt.Sprintf("must be between %d and %d, got %d", r.min, r.max, n)}
	}
	return nil
}

// fmtDur prints 1h rather than 1h0m0s.
func fmtDur(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// Validate checks every field of a loaded config (defaults applied):
// names, ranges of durations and limits, log settings and fact names. It
// reads no file. signetd's start-up (Run) and `signetd --check` (Check)
// both call it, so --check refuses exactly what start-up refuses.
func (c *Config) Validate() error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	if err := bus.CheckIdentity(c.Identity); err != nil {
		add(&ConfigError{Key: "identity", Msg: err.Error()})
	}
	if err := bus.CheckCollective(c.Collective); err != nil {
		add(&ConfigError{Key: "collective", Msg: err.Error()})
	}
	if len(c.NATS.URLs) == 0 {
		add(&ConfigError{Key: "nats.urls", Msg: "list at least one broker URL"})
	}
	for _, u := range c.NATS.URLs {
		if strings.TrimSpace(u) == "" || strings.ContainsAny(u, " \t\r\n") {
			add(&ConfigError{Key: "nats.urls", Msg: fmt.Sprintf("%q is not a broker URL such as nats://10.0.0.1:4222", u)})
		}
	}
	if err := replicas.Check(c.NATS.Replicas); err != nil {
		add(&ConfigError{Key: "nats.replicas", Msg: err.Error()})
	}
	for key, p := range map[string]string{"host_key": c.HostKey, "authorized_keys": c.AuthorizedKeys, "policy": c.Policy, "audit_log": c.AuditLog} {
		if strings.TrimSpace(p) == "" {
			add(&ConfigError{Key: key, Msg: "must name a file"})
		}
	}
	if c.MetricsListen != "" {
		if err := metrics.CheckListen(c.MetricsListen, c.MetricsAllowRemote); err != nil {
			add(&ConfigError{Key: "metrics_listen", Msg: err.Error()})
		}
	}
	add(maxRequestBytesRange.check("max_request_bytes", c.MaxRequestBytes))
	add(maxTTLRange.check("max_ttl", c.MaxTTL))
	add(clockSkewRange.check("clock_skew", c.ClockSkew))
	add(actionTimeoutRange.check("action_timeout", c.ActionTimeout))
	add(maxConcurrentRange.check("max_concurrent", c.MaxConcurrent))
	add(registryTTLRange.check("registry_ttl", c.RegistryTTL))
	add(shutdownTimeoutRange.check("shutdown_timeout", c.ShutdownTimeout))
	add(replayCacheRange.check("replay_cache_size", c.ReplayCacheSize))
	if !(c.ReplayKeyShare >= replayKeyShareMin && c.ReplayKeyShare <= 1) { // also refuses NaN
		add(&ConfigError{Key: "replay_key_share", Msg: fmt.Sprintf("must be between %g and 1, got %g", replayKeyShareMin, c.ReplayKeyShare)})
	}
	add(floodWindowRange.check("flood_window", c.FloodWindow))
	add(revocationMaxAgeRange.check("revocation_max_age", c.RevocationMaxAge))
	add(floodRecordsRange.check("flood_records", c.FloodRecords))
	add(floodRepliesRange.check("flood_replies", c.FloodReplies))
	add(checkpointRecords.check("audit.checkpoint_records", c.Audit.CheckpointRecords))
	add(checkpointInterval.check("audit.checkpoint_interval", c.Audit.CheckpointInterval))
	for k := range c.Facts {
		if err := facts.Check(k); err != nil {
			add(&ConfigError{Key: "facts", Msg: err.Error()})
		}
	}
	for _, cl := range c.Classes {
		if err := bus.CheckIdentity(cl); err != nil {
			add(&ConfigError{Key: "classes", Msg: fmt.Sprintf("invalid class %q: want letters, digits, . _ -", cl)})
		}
	}
	if c.Log.Level != "" {
		var lvl slog.Level
		if err := lvl.UnmarshalText([]byte(c.Log.Level)); err != nil {
			add(&ConfigError{Key: "log.level", Msg: fmt.Sprintf("%q: want debug, info, warn or error", c.Log.Level)})
		}
	}
	switch c.Log.Format {
	case "", "auto", "json", "text":
	default:
		add(&ConfigError{Key: "log.format", Msg: fmt.Sprintf("%q: want json, text or auto", c.Log.Format)})
	}
	return errors.Join(errs...)
}

// Check is `signetd --check` and the first half of Run: it validates the
// config, then loads everything start-up loads (plugins and their
// settings, facts, authorized keys, policy, and the host key when it
// exists) exactly as start-up does. It has no side effects: it creates no
// key, directory or file. The returned host must be closed.
func Check(cfg *Config, version string) (*Host, error) {
	return prepare(cfg, version, nil)
}

// prepare is Check with a logger for the host Run serves.
func prepare(cfg *Config, version string, log *slog.Logger) (*Host, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	pl, err := LoadPlugins(cfg)
	if err != nil {
		return nil, err
	}
	f, err := HostFacts(cfg, version)
	if err != nil {
		return nil, err
	}
	if err := keys.CheckHostKey(cfg.HostKey); err != nil {
		return nil, fmt.Errorf("host key: %w", err)
	}
	if cfg.HostCertificate != "" {
		if err := keys.CheckHostCertificate(cfg.HostCertificate, cfg.Identity); err != nil {
			return nil, fmt.Errorf("host certificate: %w", err)
		}
	}
	if err := checkAuditLog(cfg.AuditLog); err != nil {
		return nil, err
	}
	if err := checkNATSFiles(cfg.NATS); err != nil {
		return nil, err
	}
	host, err := NewHost(HostOptions{
		Identity: cfg.Identity, Collective: cfg.Collective, Version: version, Facts: f, Classes: cfg.Classes,
		Plugins: pl, AuthorizedKeys: cfg.AuthorizedKeys, Policy: cfg.Policy, ActionTimeout: cfg.ActionTimeout.D(), Logger: log,
		RevokedKeys: cfg.RevokedKeys, RevocationMaxAge: cfg.RevocationMaxAge.D(), ClockSkew: cfg.ClockSkew.D(),
		ControlState: controlStatePath(cfg.ControlState),
	})
	if err != nil {
		return nil, err
	}
	return host, nil
}

// checkAuditTail refuses, as start-up does, a log whose last line cannot
// continue the hash chain.
func checkAuditTail(path string) error {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return fmt.Errorf("audit_log: %w", err)
	}
	defer f.Close()
	if _, err := audit.LastSeq(f); err != nil {
		return fmt.Errorf("audit_log: %s: %w", path, err)
	}
	return nil
}

// checkAuditLog checks, without creating anything, that start-up can
// open the audit log: an existing one must be a writable file, else the
// nearest existing directory above it must be writable.
func checkAuditLog(path string) error {
	fi, err := os.Stat(path)
	switch {
	case err == nil && !fi.Mode().IsRegular():
		return fmt.Errorf("audit_log: %s is not a regular file (%s)", path, fi.Mode().Type())
	case err == nil:
		if err := unix.Access(path, unix.W_OK); err != nil {
			return fmt.Errorf("audit_log: %s is not writable: %w", path, err)
		}
		return checkAuditTail(path)
	case !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR):
		return fmt.Errorf("audit_log: %w", err)
	}
	for d := filepath.Dir(path); ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		switch {
		case err == nil && !fi.IsDir():
			return fmt.Errorf("audit_log: cannot create %s: %s is not a directory", path, d)
		case err == nil:
			if err := unix.Access(d, unix.W_OK); err != nil {
				return fmt.Errorf("audit_log: cannot create %s: %s is not writable: %w", path, d, err)
			}
			return nil
		case errors.Is(err, syscall.ENOTDIR):
			continue // a file further up; reported when reached
		case !errors.Is(err, fs.ErrNotExist):
			return fmt.Errorf("audit_log: %w", err)
		}
		if d == filepath.Dir(d) {
			return nil
		}
	}
}

// checkNATSFiles checks that the broker credential and TLS files start-up
// reads can be read.
func checkNATSFiles(c NATSConfig) error {
	for _, f := range []struct{ key, path string }{
		{"nats.creds", c.Creds}, {"nats.nkey_file", c.NKeyFile}, {"nats.password_file", c.PasswordFile},
		{"nats.ca_file", c.CAFile}, {"nats.cert_file", c.CertFile}, {"nats.key_file", c.KeyFile},
	} {
		if f.path == "" {
			continue
		}
		fh, err := os.Open(f.path)
		if err != nil {
			return fmt.Errorf("%s: %w", f.key, err)
		}
		fh.Close()
	}
	return c.Check()
}
