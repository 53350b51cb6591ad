// Command signetd is the host responder. See internal/signetd and agents.
package main

import (
	"context"
	"os"

	"github.com/signetbus/signet/internal/metrics/prom"
	"github.com/signetbus/signet/internal/signetd"
)

func main() {
	stdio := signetd.StdIO()
	stdio.Metrics = prom.Export // the Prometheus exporter: linked into signetd only
	os.Exit(signetd.Main(context.Background(), os.Args[1:], stdio))
}
