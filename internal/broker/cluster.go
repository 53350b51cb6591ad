package broker

import (
	"fmt"
	"net"
	"net/url"
	"strconv"

	"github.com/nats-io/nats-server/v2/server"
)

// Topology is where a broker sits in a production deployment: a node of a
// cluster (routes to its peers, JetStream replicated across them), a hub
// that accepts leafnode connections from a DR site, or a DR site's broker
// that connects to the hub as a leafnode. The zero value is a single
// broker.
type Topology struct {
	// ClusterName, ClusterListen and Routes make the node part of a cluster:
	// ClusterListen is "host:port", Routes are "nats://host:port" URLs of the
	// other nodes (listing this node's own address too is harmless).
	ClusterName   string
	ClusterListen string
	Routes        []string
	// LeafListen is "host:port" where DR brokers connect as leafnodes.
	LeafListen string
	// LeafAdvertise is the "host:port" DR brokers reach LeafListen at,
	// when that is not its own address (NAT, a load balancer, a tunnel).
	// The hub tells connected DR brokers every node's address, so that
	// they fail over to another node by themselves.
	LeafAdvertise string
	// LeafRemotes are "nats-leaf://host:port" (or nats://) URLs of the
	// hub's leafnode listeners; set on a DR broker. Several URLs are tried
	// in turn, so list every node of the hub cluster.
	LeafRemotes []string
	// Domain is the JetStream domain. A DR broker needs its own ("dr"), so
	// that its hosts' registry and control bucket stay on its side of the
	// leafnode and a hub client can still reach them as $JS.dr.API.
	Domain string
	// Auth, when set, locks routes, the leafnode listener and leafnode
	// remotes down: mutual TLS with the nodes' CA and the cluster secret
	// (LoadClusterAuth). Without it anyone who reaches the cluster port
	// joins as a route and sees every message, whatever the users'
	// permissions.
	Auth *ClusterAuth
	// LeafUsers, on a hub with Auth, authenticates DR brokers on the
	// leafnode listener as users of the broker's authorization (LeafUser,
	// with its permissions) instead of by the cluster secret; mutual TLS
	// stays. LeafSeed, on a DR broker, is that user's nkey seed.
	LeafUsers bool
	LeafSeed  string
}

// apply sets the server options of the topology.
func (t Topology) apply(opts *server.Options) error {
	opts.JetStreamDomain = t.Domain
	if t.ClusterListen != "" {
		host, port, err := hostPort(t.ClusterListen)
		if err != nil {
			return fmt.Errorf("broker: cluster listen address %q: %w", t.ClusterListen, err)
		}
		opts.Cluster.Name = t.ClusterName
		if opts.Cluster.Name == "" {
			opts.Cluster.Name = "signet"
		}
		opts.Cluster.Host, opts.Cluster.Port = host, port
		if t.Auth != nil {
			opts.Cluster.Username, opts.Cluster.Password = ClusterUser, t.Auth.Secret
			opts.Cluster.TLSConfig, opts.Cluster.TLSTimeout = t.Auth.TLS, 2
		}
		for _, r := range t.Routes {
			ru, err := url.Parse(r)
			if err != nil || ru.Host == "" {
				return fmt.Errorf("broker: route %q: want nats://host:port", r)
			}
			if t.Auth != nil {
				ru = t.Auth.withUser(ru)
			}
			opts.Routes = append(opts.Routes, ru)
		}
	} else if len(t.Routes) > 0 {
		return fmt.Errorf("broker: routes need a cluster listen address")
	}
	if t.LeafListen != "" {
		host, port, err := hostPort(t.LeafListen)
		if err != nil {
			return fmt.Errorf("broker: leafnode listen address %q: %w", t.LeafListen, err)
		}
		opts.LeafNode.Host, opts.LeafNode.Port = host, port
		opts.LeafNode.Advertise = t.LeafAdvertise
		if t.Auth != nil {
			if !t.LeafUsers {
				opts.LeafNode.Username, opts.LeafNode.Password = ClusterUser, t.Auth.Secret
			}
			opts.LeafNode.TLSConfig, opts.LeafNode.TLSTimeout = t.Auth.TLS, 2
		}
	}
	if len(t.LeafRemotes) > 0 {
		remote := &server.RemoteLeafOpts{}
		for _, r := range t.LeafRemotes {
			ru, err := url.Parse(r)
			if err != nil || ru.Host == "" {
				return fmt.Errorf("broker: leafnode remote %q: want nats-leaf://host:port", r)
			}
			if t.Auth != nil && t.LeafSeed == "" {
				ru = t.Auth.withUser(ru)
			}
			remote.URLs = append(remote.URLs, ru)
		}
		if t.Auth != nil {
			remote.TLS, remote.TLSConfig, remote.TLSTimeout = true, t.Auth.TLS, 2
		}
		remote.Nkey = t.LeafSeed
		opts.LeafNode.Remotes = append(opts.LeafNode.Remotes, remote)
	}
	return nil
}

// hostPort splits "host:port"; port -1 picks a free one.
func hostPort(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < -1 || port > 65535 {
		return "", 0, fmt.Errorf("port %q is not a number from 1 to 65535", p)
	}
	return host, port, nil
}
