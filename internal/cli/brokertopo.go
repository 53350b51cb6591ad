package cli

import (
	"github.com/spf13/pflag"

	"github.com/signetbus/signet/internal/broker"
)

// addTopologyFlags adds the flags of `signet broker` that place it in a
// production topology: a cluster node, a leafnode hub, a DR site.
func addTopologyFlags(f *pflag.FlagSet, t *broker.Topology) {
	f.StringVar(&t.ClusterListen, "cluster", "", "cluster listen address host:port (makes this a cluster node)")
	f.StringVar(&t.ClusterName, "cluster-name", "signet", "cluster name")
	f.StringArrayVar(&t.Routes, "route", nil, "nats://host:port of a cluster node's --cluster address (repeatable; list every node)")
	f.StringVar(&t.LeafListen, "leafnode-listen", "", "host:port where DR brokers connect as leafnodes (on the hub's nodes)")
	f.StringVar(&t.LeafAdvertise, "leafnode-advertise", "", "host:port DR brokers reach --leafnode-listen at, when not its own address")
	f.StringArrayVar(&t.LeafRemotes, "leafnode-remote", nil, "nats-leaf://host:port of a hub node's --leafnode-listen (repeatable; makes this a DR broker)")
	f.StringVar(&t.Domain, "domain", "", "JetStream domain (a DR broker needs its own, such as dr)")
}

// checkTopology refuses flag combinations that would start a broker that
// cannot work in its topology.
func checkTopology(name string, t broker.Topology) error {
	if t.ClusterListen != "" && name == "" {
		return usageErrorf("a cluster node needs --name, unique in the cluster")
	}
	if len(t.Routes) > 0 && t.ClusterListen == "" {
		return usageErrorf("--route needs --cluster: the address this node's peers connect to")
	}
	return nil
}
