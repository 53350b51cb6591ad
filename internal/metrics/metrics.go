// Package metrics is the contract of signetd's metrics: the listen address
// check, the options of a host's exporter, and what the daemon reports to
// it. The Prometheus exporter itself (the official client library) is in
// metrics/prom, which only the signetd binary links: the operator CLI
// (signet), whose every run pays for the init of every package it links,
// stays without it.
//
// Metrics are off by default, served on GET /metrics only, and bound to a
// loopback address unless the operator explicitly allows another one
// (docs/metrics.md).
package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/signetbus/signet/bus"
)

// ErrNotLoopback is returned by CheckListen for an address that is not a
// loopback one, when remote scrapes are not allowed.
var ErrNotLoopback = errors.New("metrics: listen address is not a loopback address")

// ErrNoExporter is returned when metrics are configured but the program
// was built without an exporter (signetd has one; the in-process signetd
// of `signet`'s tests does not).
var ErrNoExporter = errors.New("metrics: this build has no metrics exporter; run the signetd binary")

// CheckListen checks a metrics listen address ("127.0.0.1:9464",
// "[::1]:9464", "localhost:9464"). Unless allowRemote, the host must be a
// loopback IP or "localhost": an empty host (":9464") listens on every
// interface, and any other name may resolve to one.
func CheckListen(addr string, allowRemote bool) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("metrics: listen address %q: want HOST:PORT, for example 127.0.0.1:9464", addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("metrics: listen address %q: bad port %q", addr, port)
	}
	if allowRemote || host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("%w: %q would serve metrics beyond this machine; use 127.0.0.1:PORT, or allow it explicitly (metrics_allow_remote: true) and firewall it", ErrNotLoopback, addr)
}

// HostOptions configure the exporter of one signetd.
type HostOptions struct {
	// Listen is the HOST:PORT to serve /metrics on; AllowRemote allows a
	// non-loopback one (see CheckListen).
	Listen      string
	AllowRemote bool
	// Version is signetd's version, exported in signetd_build_info.
	Version string
	// Known reports whether this host offers agent.action: only those
	// become label values, so that messages naming made-up agents (anyone
	// on the broker can send them) cannot grow the label sets. Nil: none.
	Known  func(agent, action string) bool
	Logger *slog.Logger
}

// Host receives what one signetd does.
type Host interface {
	// Auditor returns next, counting every record written through it:
	// requests by agent, action and decision, refusals by reason, action
	// durations and plugin errors.
	Auditor(next bus.Auditor) bus.Auditor
	// Registered records the outcome of one write of the host's registry
	// entry.
	Registered(err error, now time.Time)
	// WatchConn exports the broker connection's state and reconnects.
	WatchConn(nc *nats.Conn)
	// WatchAuditShipping exports how far audit shipping lags behind the
	// log: the seq of the last line written and of the last one shipped.
	WatchAuditShipping(written, shipped func() uint64)
}

// Exporter starts serving a host's metrics until ctx ends. It binds the
// listener before it returns, so that a port in use stops start-up.
type Exporter func(ctx context.Context, o HostOptions) (Host, error)
