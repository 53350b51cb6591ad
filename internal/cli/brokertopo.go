package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/pflag"

	"github.com/signetbus/signet/bus"
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

// twoNodeWarning is what `signet broker` says on a node of a two-node
// cluster.
const twoNodeWarning = "warning: this is a two-node cluster: requests keep flowing when one node dies, but JetStream " +
	"(the registry, run state, locks, controls and audit stream) stops until both are up, since a majority of two is two; " +
	"buckets get one copy. Run three nodes (or one): three survive the loss of any one"

// clusterWarning says what the JetStream cluster s belongs to cannot
// survive: the size of its meta group comes from the configured routes, and
// is known within moments of the start. Only a two-node cluster is
// warned about: it loses JetStream with either node, twice as often as a
// single broker.
func clusterWarning(s *server.Server) string {
	const wait = 5 * time.Second
	if !s.JetStreamIsClustered() {
		return ""
	}
	for deadline := time.Now().Add(wait); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		j, err := s.Jsz(nil)
		if err != nil || j.Meta == nil || j.Meta.Size == 0 {
			continue
		}
		if j.Meta.Size == 2 {
			return twoNodeWarning
		}
		return ""
	}
	return ""
}

// storeOpenTimeout bounds opening the run state and lock buckets: on a
// cluster whose nodes holding them are down, the requests would otherwise
// be retried until the command's context ends.
const storeOpenTimeout = 15 * time.Second

// storeHint is said when the run state and lock buckets cannot be opened.
const storeHint = "workflows keep their state and locks in JetStream: the broker needs JetStream enabled and, on a " +
	"cluster, its majority and the nodes holding these buckets up (a cluster that lost one node of two, or two of three, " +
	"keeps none): start the stopped nodes"

// registryUnavailable says why the fleet registry of collective could not
// be opened when the session found none: the broker's JetStream does not
// answer (a cluster that lost its majority), or the registry's stream is
// offline (its copies are on nodes that are down). It returns the registry
// when it opens now, and nil, nil when there is truly none.
func registryUnavailable(ctx context.Context, js jetstream.JetStream, collective string) (*bus.Registry, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	const hint = "a broker cluster that lost its majority (one node of two, two of three), or whose nodes holding " +
		"the bucket are down, keeps no registry, run state or locks until they are back: start the stopped nodes. " +
		"Three nodes with three copies survive the loss of any one"
	if _, err := js.AccountInfo(ctx); err != nil {
		return nil, withHint(fmt.Errorf("the broker's JetStream does not answer (%w): the registry, run state and locks are unavailable", err), hint)
	}
	reg, err := bus.OpenRegistryIn(ctx, js, collective)
	switch {
	case err == nil:
		return reg, nil
	case errors.Is(err, bus.ErrNoRegistry):
		return nil, nil
	}
	return nil, withHint(fmt.Errorf("the fleet registry of %s is unavailable: %w", collective, err), hint)
}

// topologyAuth locks down the routes and leafnodes of a broker started
// with --auth DIR: the nodes present and require DIR/cluster (mutual TLS
// with the nodes' CA, and the cluster secret). A single broker without
// cluster or leafnode flags needs none.
func topologyAuth(authDir string, t *broker.Topology) error {
	if authDir == "" || t.ClusterListen == "" && t.LeafListen == "" && len(t.LeafRemotes) == 0 {
		return nil
	}
	a, err := broker.LoadClusterAuth(authDir)
	if err != nil {
		return withHint(err, fmt.Sprintf("`signet broker init %s` writes %s; copy that directory to every node and DR broker",
			authDir, filepath.Dir(broker.ClusterAuthPaths(authDir).Secret)))
	}
	t.Auth = a
	// A hub whose init names a DR domain made the leafnode user (its
	// seed in cluster/, which DR brokers copy): DR brokers connect as it,
	// with its permissions, and the hub takes no other leafnode.
	if b, err := os.ReadFile(broker.LeafSeedPath(authDir)); err == nil {
		t.LeafUsers = t.LeafListen != ""
		if len(t.LeafRemotes) > 0 {
			t.LeafSeed = strings.TrimSpace(string(b))
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("leafnode user: %w", err)
	}
	return nil
}

// initClusterAuth writes the credentials broker nodes present to each
// other (DIR/cluster) for `signet broker init`.
func initClusterAuth(g *globalOptions, dir string, validity time.Duration) error {
	f, err := broker.GenerateClusterAuth(dir, validity)
	if err != nil {
		return err
	}
	fmt.Fprintf(g.io.Err, "cluster nodes and DR brokers present %s to each other on routes and leafnodes: copy it to each\n", filepath.Dir(f.Secret))
	return nil
}

// deferProvision takes a cluster node's provisioning out of the start-up.
// A single locked-down broker creates its buckets before it accepts
// clients (broker.Config.Provision), but a cluster node cannot: it opens
// its routes only once it accepts clients, and JetStream needs a majority
// of the nodes, which operators start one by one. So the node starts, and
// the returned function (nil when there is nothing to defer) provisions
// in the background on the node that leads JetStream once a majority is
// up; hosts that come first find the buckets missing and register once
// they exist.
func deferProvision(g *globalOptions, cfg *broker.Config) func(ctx context.Context, s *server.Server) {
	p := cfg.Provision
	if p == nil || cfg.Topology.ClusterListen == "" {
		return nil
	}
	cfg.Provision = nil
	return func(ctx context.Context, s *server.Server) {
		var last string
		for {
			// One node provisions: the JetStream meta leader. Three nodes
			// creating and updating the same streams at once wait on each
			// other past every timeout. If the leader dies first, the
			// next one provisions (it is idempotent).
			if s.JetStreamIsLeader() {
				err := p(s)
				if err == nil {
					fmt.Fprintln(g.io.Err, "buckets and audit stream provisioned on the cluster")
					return
				}
				if msg := err.Error(); msg != last {
					fmt.Fprintf(g.io.Err, "provisioning the buckets: %v; retrying\n", err)
					last = msg
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
		}
	}
}
