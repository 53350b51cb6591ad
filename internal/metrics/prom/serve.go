// Package prom is signetd's Prometheus exporter, with the official
// client library (github.com/prometheus/client_golang). Its metrics live in
// a registry of its own, never the library's global default registry, and
// are built only when metrics_listen is set. Only the signetd binary links
// this package (see package metrics).
package prom

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/signetbus/signet/internal/metrics"
)

// Server serves one registry's metrics over HTTP.
type Server struct {
	ln  net.Listener
	srv *http.Server
}

// Listen checks addr (CheckListen) and binds it, so that a port already
// in use stops start-up rather than leaving the host unobserved.
func Listen(addr string, allowRemote bool, g prometheus.Gatherer, log *slog.Logger) (*Server, error) {
	if err := metrics.CheckListen(addr, allowRemote); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{
		ErrorLog:            slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		ErrorHandling:       promhttp.ContinueOnError, // a failed read leaves out its metrics, not all
		MaxRequestsInFlight: 4,
		Timeout:             10 * time.Second,
	}))
	return &Server{ln: ln, srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout: 10 * time.Second, WriteTimeout: 15 * time.Second, IdleTimeout: time.Minute,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}}, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Serve serves until ctx ends, then closes the listener.
func (s *Server) Serve(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(s.ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("metrics: %w", err)
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = s.srv.Shutdown(sctx)
		return nil
	}
}
