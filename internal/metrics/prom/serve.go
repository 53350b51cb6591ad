// Package prom is signetd's Prometheus exporter, with the official
// client library (github.com/prometheus/client_golang). Its metrics live in
// a registry of its own, never the library's global default registry, and
// are built only when metrics_listen is set. Only the signetd binary links
// this package (see package metrics).
package prom

import (
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/signetbus/signet/internal/metrics"
)

// Server serves one registry's metrics over HTTP.
type Server = metrics.Server

// Listen checks addr (metrics.CheckListen) and binds it, so that a port
// already in use stops start-up rather than leaving the host unobserved.
func Listen(addr string, allowRemote bool, g prometheus.Gatherer, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return metrics.Listen(addr, allowRemote, promhttp.HandlerFor(g, promhttp.HandlerOpts{
		ErrorLog:            slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		ErrorHandling:       promhttp.ContinueOnError, // a failed read leaves out its metrics, not all
		MaxRequestsInFlight: 4,
		Timeout:             10 * time.Second,
	}), log)
}
