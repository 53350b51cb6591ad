// Command signetd is the host responder. See internal/signetd and agents.
package main

import (
	"context"
	"os"
	"runtime"

	"github.com/signetbus/signet/agents"
	"github.com/signetbus/signet/internal/metrics/prom"
	"github.com/signetbus/signet/internal/signetd"
)

func main() {
	if n := agents.DaemonProcs(os.Getenv("GOMAXPROCS")); n > 0 {
		runtime.GOMAXPROCS(n)
	}
	stdio := signetd.StdIO()
	stdio.Metrics = prom.Export // the Prometheus exporter: linked into signetd only
	os.Exit(signetd.Main(context.Background(), os.Args[1:], stdio))
}
