package cli

import (
	"context"
	"fmt"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/spf13/pflag"

	"github.com/signetbus/signet/internal/metrics"
	"github.com/signetbus/signet/internal/metrics/brokermetrics"
)

// brokerMonitorOptions are `signet broker`'s monitoring flags: the NATS
// server's own HTTP monitoring endpoints (/varz: connections, messages,
// bytes, slow consumers; /jsz: JetStream usage; /healthz ...), which every
// NATS tool reads, and Prometheus metrics (/metrics, the text format)
// written from the same data by brokermetrics without the Prometheus
// client library: the operator CLI does not link it, as every signet
// command would pay for its init (docs/metrics.md).
type brokerMonitorOptions struct {
	listen      string
	allowRemote bool

	metricsListen      string
	metricsAllowRemote bool
}

func addBrokerMonitorFlags(f *pflag.FlagSet, o *brokerMonitorOptions) {
	f.StringVar(&o.listen, "monitor-listen", "", "serve the broker's HTTP monitoring endpoints (/varz, /jsz, /healthz) on HOST:PORT, e.g. 127.0.0.1:8222 (default off)")
	f.BoolVar(&o.allowRemote, "monitor-allow-remote", false, "allow a --monitor-listen address that is not a loopback one")
	f.StringVar(&o.metricsListen, "metrics-listen", "", "serve Prometheus metrics on http://HOST:PORT/metrics, e.g. 127.0.0.1:7777 (default off)")
	f.BoolVar(&o.metricsAllowRemote, "metrics-allow-remote", false, "allow a --metrics-listen address that is not a loopback one")
}

// check refuses a monitoring or metrics address beyond this machine unless
// allowed.
func (o *brokerMonitorOptions) check() error {
	if o.listen != "" {
		if err := metrics.CheckListen(o.listen, o.allowRemote); err != nil {
			return usageErrorf("--monitor-listen: %v", err)
		}
	}
	if o.metricsListen != "" {
		if err := metrics.CheckListen(o.metricsListen, o.metricsAllowRemote); err != nil {
			return usageErrorf("--metrics-listen: %v (or --metrics-allow-remote)", err)
		}
	}
	return nil
}

// startMetrics binds the metrics address, so that a port in use stops the
// broker's start-up, and serves s's metrics until stop is called.
func (o *brokerMonitorOptions) startMetrics(g *globalOptions, s *server.Server) (stop func(), err error) {
	if o.metricsListen == "" {
		return func() {}, nil
	}
	m, err := brokermetrics.Listen(o.metricsListen, o.metricsAllowRemote, s, g.logger())
	if err != nil {
		return nil, fmt.Errorf("--metrics-listen: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := m.Serve(ctx); err != nil {
			fmt.Fprintf(g.io.Err, "signet broker: %v\n", err)
		}
	}()
	return func() { cancel(); <-done }, nil
}

// describe is the status line's part about monitoring and metrics.
func (o *brokerMonitorOptions) describe() string {
	d := ""
	if o.listen != "" {
		d += fmt.Sprintf("; monitoring on http://%s/varz", o.listen)
	}
	if o.metricsListen != "" {
		d += fmt.Sprintf("; metrics on http://%s/metrics", o.metricsListen)
	}
	return d
}
