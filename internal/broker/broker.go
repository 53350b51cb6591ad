// Package broker runs an embedded NATS server with JetStream: the broker
// behind `signet broker`, `signet lab` and the integration tests.
package broker

import (
	"errors"
	"fmt"
	"net"
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
	// Topology makes the broker a cluster node, a leafnode hub or a DR
	// site's leafnode (see Topology); zero is a single broker.
	Topology
	// MaxPayload bounds a message; default 1 MiB.
	MaxPayload int32
	// Debug logs the server's own messages to stderr.
	Debug bool
	// AuthConfig is a nats-server configuration file whose authorization
	// block lists the users and their permissions (`signet broker init`
	// writes auth.conf, see GenerateAuth). Without it anyone who reaches
	// the port may publish and subscribe to anything.
	AuthConfig string
	// TLSCert and TLSKey are the server's certificate and key (PEM). With
	// them the broker accepts TLS connections only.
	TLSCert, TLSKey string
	// TLSClientCA, when set, makes clients present a certificate that
	// chains to this CA (mutual TLS).
	TLSClientCA string
	// Provision, when set, runs once the server is up but before it
	// accepts client connections (it may connect in-process,
	// nats.InProcessServer): a locked-down broker creates its buckets
	// there, so no host finds them missing and tries, without the right
	// to, to create them.
	Provision func(*server.Server) error
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
	if cfg.AuthConfig != "" {
		fo, err := server.ProcessConfigFile(cfg.AuthConfig)
		if err != nil {
			return nil, fmt.Errorf("broker: auth config: %w", err)
		}
		if len(fo.Nkeys) == 0 && len(fo.Users) == 0 {
			return nil, fmt.Errorf("broker: auth config %s lists no users: run `signet broker init` to write one", cfg.AuthConfig)
		}
		opts.Nkeys, opts.Users = fo.Nkeys, fo.Users
	}
	if cfg.TLSCert != "" || cfg.TLSKey != "" || cfg.TLSClientCA != "" {
		tc, err := tlsConfig(cfg.TLSCert, cfg.TLSKey, cfg.TLSClientCA)
		if err != nil {
			return nil, err
		}
		opts.TLSConfig, opts.TLS, opts.TLSVerify, opts.TLSTimeout = tc, true, cfg.TLSClientCA != "", 2
	}
	if err := cfg.Topology.apply(opts); err != nil {
		return nil, err
	}
	opts.DontListen = cfg.Provision != nil
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
	if cfg.Provision != nil {
		if err := cfg.Provision(s); err != nil {
			s.Shutdown()
			return nil, err
		}
		ready := make(chan struct{})
		s.AcceptLoop(ready)
		<-ready
		if s.Addr() == nil {
			s.Shutdown()
			return nil, fmt.Errorf("broker: cannot listen on %s:%d", opts.Host, opts.Port)
		}
	}
	return s, nil
}
