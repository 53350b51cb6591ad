package agents

import (
	"context"
	"log/slog"

	"github.com/signetbus/signet/internal/metrics"
)

// startMetrics starts the host's metrics exporter when cfg.MetricsListen
// is set; otherwise it returns nil and nothing is built. The exporter binds
// its listener before it returns, so a port in use stops start-up.
func startMetrics(ctx context.Context, cfg *Config, host *Host, export metrics.Exporter, version string, log *slog.Logger) (metrics.Host, error) {
	if cfg.MetricsListen == "" {
		return nil, nil
	}
	if export == nil {
		return nil, metrics.ErrNoExporter
	}
	return export(ctx, metrics.HostOptions{Listen: cfg.MetricsListen, AllowRemote: cfg.MetricsAllowRemote,
		Version: version, Known: host.offers, Logger: log})
}

// offers reports whether this host has agent.action: only those become
// metric labels.
func (h *Host) offers(agent, action string) bool {
	if _, ok := h.plugins[agent]; !ok {
		return false
	}
	_, ok := h.ddls[agent].Action(action)
	return ok
}
