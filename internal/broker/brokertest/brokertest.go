// Package brokertest starts a real embedded NATS server with JetStream for
// tests: a free loopback port, a temporary store, shut down at cleanup.
package brokertest

import (
	"testing"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/signetbus/signet/internal/broker"
)

// Start starts a broker for the test and returns it; s.ClientURL() is the
// URL to connect to.
func Start(tb testing.TB) *server.Server {
	tb.Helper()
	s, err := broker.Start(broker.Config{Port: -1, StoreDir: tb.TempDir()})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return s
}
