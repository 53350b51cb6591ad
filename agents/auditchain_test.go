package agents

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/signetbus/signet/internal/audit"
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

// An idle host still checkpoints at the interval (the beat verify uses to
// notice a cut tail), and a stop ends the log on a checkpoint; every one
// verifies with the host key.
func TestAuditChainCheckpointsWhenIdle(t *testing.T) {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	key, _ := ssh.NewSignerFromKey(priv)
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	aud, err := audit.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer aud.Close()
	cfg := validConfig()
	off := false
	cfg.Audit.Ship, cfg.Audit.CheckpointInterval = &off, Duration(10*time.Millisecond)
	stop := StartAuditChain(context.Background(), cfg, aud, key, nil, slog.New(slog.DiscardHandler))
	deadline := time.Now().Add(10 * time.Second)
	for seq, _ := aud.Head(); seq < 2; seq, _ = aud.Head() {
		if time.Now().After(deadline) {
			t.Fatal("no checkpoint written at the interval")
		}
		time.Sleep(5 * time.Millisecond)
	}
	stop()
	b, _ := os.ReadFile(path)
	lines := audit.FileLines(b, "audit.jsonl")
	rep := audit.Verify(lines, audit.VerifyOptions{FromStart: true, HostKey: func(id string) (ssh.PublicKey, bool) { return key.PublicKey(), id == "web1" }})
	if len(rep.Findings) > 0 || rep.Hosts[0].Checkpoints != len(lines) || len(lines) < 3 {
		t.Fatalf("findings %v, summary %+v, %d lines", rep.Findings, rep.Hosts, len(lines))
	}
}
