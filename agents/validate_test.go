package agents

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func validConfig() *Config {
	c := &Config{Identity: "web1"}
	c.setDefaults()
	return c
}

// TestValidateDefaults: the defaults are inside every range.
func TestValidateDefaults(t *testing.T) {
	if err := validConfig().Validate(); err != nil {
		t.Fatal(err)
	}
}

// TestValidateRanges: each bound is accepted, one step outside it is an
// error naming the key.
func TestValidateRanges(t *testing.T) {
	type edit func(c *Config, ok bool)
	durKey := func(key string, r durationRange, field func(*Config) *Duration) (string, edit, edit) {
		return key,
			func(c *Config, ok bool) { *field(c) = Duration(pick(ok, r.min, r.min-time.Millisecond)) },
			func(c *Config, ok bool) { *field(c) = Duration(pick(ok, r.max, r.max+time.Millisecond)) }
	}
	intKey := func(key string, r intRange, field func(*Config) *int) (string, edit, edit) {
		return key,
			func(c *Config, ok bool) { *field(c) = pick(ok, r.min, r.min-1) },
			func(c *Config, ok bool) { *field(c) = pick(ok, r.max, r.max+1) }
	}
	type row struct {
		key    string
		lo, hi edit
	}
	mk := func(k string, lo, hi edit) row { return row{k, lo, hi} }
	rows := []row{
		mk(durKey("max_ttl", maxTTLRange, func(c *Config) *Duration { return &c.MaxTTL })),
		mk(durKey("clock_skew", clockSkewRange, func(c *Config) *Duration { return &c.ClockSkew })),
		mk(durKey("action_timeout", actionTimeoutRange, func(c *Config) *Duration { return &c.ActionTimeout })),
		mk(durKey("registry_ttl", registryTTLRange, func(c *Config) *Duration { return &c.RegistryTTL })),
		mk(durKey("shutdown_timeout", shutdownTimeoutRange, func(c *Config) *Duration { return &c.ShutdownTimeout })),
		mk(intKey("max_request_bytes", maxRequestBytesRange, func(c *Config) *int { return &c.MaxRequestBytes })),
		mk(intKey("max_concurrent", maxConcurrentRange, func(c *Config) *int { return &c.MaxConcurrent })),
		mk(intKey("replay_cache_size", replayCacheRange, func(c *Config) *int { return &c.ReplayCacheSize })),
		mk(durKey("flood_window", floodWindowRange, func(c *Config) *Duration { return &c.FloodWindow })),
		mk(intKey("flood_records", floodRecordsRange, func(c *Config) *int { return &c.FloodRecords })),
		mk(intKey("flood_replies", floodRepliesRange, func(c *Config) *int { return &c.FloodReplies })),
		{"replay_key_share",
			func(c *Config, ok bool) { c.ReplayKeyShare = pick(ok, replayKeyShareMin, replayKeyShareMin/2) },
			func(c *Config, ok bool) { c.ReplayKeyShare = pick(ok, 1.0, 1.01) }},
	}
	for _, r := range rows {
		for _, e := range []edit{r.lo, r.hi} {
			c := validConfig()
			e(c, true)
			if err := c.Validate(); err != nil {
				t.Errorf("%s at its bound: %v", r.key, err)
			}
			c = validConfig()
			e(c, false)
			err := c.Validate()
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.Key != r.key || !errors.Is(err, ErrConfig) || !strings.HasPrefix(err.Error(), r.key+": must be between ") {
				t.Errorf("%s out of range: got %v", r.key, err)
			}
		}
	}
}

func pick[T any](ok bool, a, b T) T {
	if ok {
		return a
	}
	return b
}
