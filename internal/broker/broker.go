// Package broker runs an embedded NATS server with JetStream: the broker
// behind `signet broker`, `signet lab` and the integration tests.
package broker

import (
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Config configures an embedded broker.
type Config struct {
	// Host is the client listen address; default 127.0.0.1.
	Host string
	// Port is the client port; -1 picks a free port, 0 means 4222.
	Port int
	// StoreDir holds JetStream data; required.
	StoreDir string
	// Name is the server name (needed for clustering); default "signet".
	Name string
	// Topology makes the broker a cluster node, a leafnode hub or a DR
	// site's leafnode (see Topology); zero is a single broker.
	Topology
	// MaxPayload bounds a message; default 1 MiB.
	MaxPayload int32
	// Debug logs the server's own messages to stderr.
	Debug bool
}

// Start starts the broker and waits until it accepts connections.
func Start(cfg Config) (*server.Server, error) {
	if cfg.StoreDir == "" {
		return nil, errors.New("broker: a JetStream store directory is required")
	}
	if cfg.Host == "" {
		cfg.Host = "127.0.0.1"
	}
	if cfg.Name == "" {
		cfg.Name = "signet"
	}
	opts := &server.Options{
		ServerName: cfg.Name,
		Host:       cfg.Host,
		Port:       cfg.Port,
		JetStream:  true,
		StoreDir:   cfg.StoreDir,
		MaxPayload: cfg.MaxPayload,
		NoSigs:     true,
	}
	if opts.Port == 0 {
		opts.Port = 4222
	}
	if opts.MaxPayload == 0 {
		opts.MaxPayload = 1 << 20
	}
	if err := cfg.Topology.apply(opts); err != nil {
		return nil, err
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	if cfg.Debug {
		s.ConfigureLogger()
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return nil, errors.New("broker: not ready for connections after 10s")
	}
	return s, nil
}
