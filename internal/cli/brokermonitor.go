package cli

import (
	"fmt"

	"github.com/spf13/pflag"

	"github.com/signetbus/signet/internal/metrics"
)

// brokerMonitorOptions are `signet broker`'s monitoring flags. The broker
// serves nats-server's own HTTP monitoring endpoints (/varz: connections,
// messages, bytes, slow consumers; /jsz: JetStream usage; /healthz ...),
// which Prometheus scrapes through the NATS Prometheus exporter
// (docs/metrics.md). The operator CLI does not link the Prometheus client
// library: every signet command would pay for its init.
type brokerMonitorOptions struct {
	listen      string
	allowRemote bool
}

func addBrokerMonitorFlags(f *pflag.FlagSet, o *brokerMonitorOptions) {
	f.StringVar(&o.listen, "monitor-listen", "", "serve the broker's HTTP monitoring endpoints (/varz, /jsz, /healthz) on HOST:PORT, e.g. 127.0.0.1:8222 (default off)")
	f.BoolVar(&o.allowRemote, "monitor-allow-remote", false, "allow a --monitor-listen address that is not a loopback one")
}

// check refuses a monitoring address beyond this machine unless allowed.
func (o *brokerMonitorOptions) check() error {
	if o.listen == "" {
		return nil
	}
	if err := metrics.CheckListen(o.listen, o.allowRemote); err != nil {
		return usageErrorf("--monitor-listen: %v", err)
	}
	return nil
}

// describe is the status line's part about monitoring.
func (o *brokerMonitorOptions) describe() string {
	if o.listen == "" {
		return ""
	}
	return fmt.Sprintf("; monitoring on http://%s/varz", o.listen)
}
