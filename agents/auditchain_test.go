package agents

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// The audit checkpoint settings are range-checked like every other limit.
func TestValidateAuditCheckpointRanges(t *testing.T) {
	for _, c := range []struct {
		key  string
		edit func(*Config)
	}{
		{"audit.checkpoint_records", func(c *Config) { c.Audit.CheckpointRecords = -1 }},
		{"audit.checkpoint_records", func(c *Config) { c.Audit.CheckpointRecords = checkpointRecords.max + 1 }},
		{"audit.checkpoint_interval", func(c *Config) { c.Audit.CheckpointInterval = Duration(time.Second - 1) }},
		{"audit.checkpoint_interval", func(c *Config) { c.Audit.CheckpointInterval = Duration(checkpointInterval.max + 1) }},
	} {
		cfg := validConfig()
		c.edit(cfg)
		err := cfg.Validate()
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), c.key+": must be between") {
			t.Errorf("%s out of range: %v", c.key, err)
		}
	}
	cfg := validConfig()
	if cfg.Audit.CheckpointRecords != 1000 || cfg.Audit.CheckpointInterval.D() != 5*time.Minute || !cfg.Audit.ShipOn() {
		t.Fatalf("defaults %+v", cfg.Audit)
	}
}
