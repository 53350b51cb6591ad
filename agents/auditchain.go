package agents

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"golang.org/x/crypto/ssh"

	"github.com/signetbus/signet/bus"
	"github.com/signetbus/signet/internal/audit"
	"github.com/signetbus/signet/internal/audit/ship"
	"github.com/signetbus/signet/internal/keys"
	"github.com/signetbus/signet/internal/metrics"
)

// StartAuditChain makes the audit log sign checkpoints with the host key
// (every cfg.Audit.CheckpointRecords records and every
// cfg.Audit.CheckpointInterval; zero turns either off) and ships it to the
// broker when cfg.Audit.ShipOn. The returned stop waits for both and writes
// a last checkpoint, so a clean stop ends the log on a signed line. Run
// calls it; the lab may too.
func StartAuditChain(ctx context.Context, cfg *Config, aud *audit.Log, hostKey ssh.Signer, nc *nats.Conn, log *slog.Logger) (stop func()) {
	return startAuditChain(ctx, cfg, aud, hostKey, nc, log, nil)
}

// startAuditChain is StartAuditChain; m, when set, exports the shipping lag.
func startAuditChain(ctx context.Context, cfg *Config, aud *audit.Log, hostKey ssh.Signer, nc *nats.Conn, log *slog.Logger, m metrics.Host) (stop func()) {
	aud.Identity, aud.Signer, aud.CheckpointEvery = cfg.Identity, hostKey, cfg.Audit.CheckpointRecords
	if cfg.HostCertificate != "" {
		// Checkpoints carry it: a bastion that trusts the host CA, with no
		// pinned key for this host, can still check them.
		if c, err := keys.LoadCertificate(cfg.HostCertificate); err != nil {
			log.Error("audit checkpoints carry no host certificate", "err", err)
		} else {
			aud.HostCert = bus.EncodeCert(c)
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		if cfg.Audit.CheckpointInterval <= 0 {
			return
		}
		t := time.NewTicker(cfg.Audit.CheckpointInterval.D())
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if err := aud.Checkpoint(); err != nil {
					log.Error("audit checkpoint failed", "err", err)
				}
			}
		}
	})
	if cfg.Audit.ShipOn() {
		sh, err := ship.New(ship.Config{Conn: nc, Replicas: cfg.NATS.Replicas, Collective: cfg.Collective, Identity: cfg.Identity, Path: cfg.AuditLog, Wake: aud.Written(), Logger: log})
		if err != nil {
			log.Error("audit shipping off: cannot start it", "err", err)
		} else {
			if m != nil {
				m.WatchAuditShipping(aud.Seq, sh.Acked)
			}
			wg.Go(func() {
				if err := sh.Run(ctx); err != nil && ctx.Err() == nil {
					log.Error("audit shipping stopped", "err", err)
				}
			})
		}
	}
	return func() {
		cancel()
		wg.Wait()
		if err := aud.Checkpoint(); err != nil {
			log.Error("audit checkpoint at stop failed", "err", err)
		}
	}
}
