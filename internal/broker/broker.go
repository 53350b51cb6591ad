// Package broker runs an embedded NATS server with JetStream: the broker
// behind `signet broker`, `signet lab` and the integration tests.
package broker

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
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
	// ClusterName, ClusterListen and Routes make the node part of a cluster:
	// ClusterListen is "host:port", Routes are "nats://host:port" URLs of the
	// other nodes.
	ClusterName   string
	ClusterListen string
	Routes        []string
	// MaxPayload bounds a message; default 1 MiB.
	MaxPayload int32
	// Debug logs the server's own messages to stderr.
	Debug bool
	// MonitorListen, "host:port", serves nats-server's HTTP monitoring
	// endpoints (/varz, /connz, /jsz, /healthz ...); empty serves none.
	// The caller checks the address (metrics.CheckListen).
	MonitorListen string
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
	if cfg.MonitorListen != "" {
		host, port, err := net.SplitHostPort(cfg.MonitorListen)
		if err != nil {
			return nil, fmt.Errorf("broker: monitor listen address %q: %w", cfg.MonitorListen, err)
		}
		opts.HTTPHost = host
		if opts.HTTPPort, err = strconv.Atoi(port); err != nil {
			return nil, fmt.Errorf("broker: monitor listen address %q: bad port", cfg.MonitorListen)
		}
	}
	if cfg.ClusterListen != "" {
		u, err := url.Parse("nats://" + cfg.ClusterListen)
		if err != nil {
			return nil, fmt.Errorf("broker: cluster listen address %q: %w", cfg.ClusterListen, err)
		}
		opts.Cluster.Name = cfg.ClusterName
		if opts.Cluster.Name == "" {
			opts.Cluster.Name = "signet"
		}
		opts.Cluster.Host = u.Hostname()
		fmt.Sscanf(u.Port(), "%d", &opts.Cluster.Port)
		for _, r := range cfg.Routes {
			ru, err := url.Parse(r)
			if err != nil {
				return nil, fmt.Errorf("broker: route %q: %w", r, err)
			}
			opts.Routes = append(opts.Routes, ru)
		}
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
