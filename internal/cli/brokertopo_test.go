package cli

import (
	"errors"
	"testing"

	"github.com/signetbus/signet/internal/broker"
)

func TestCheckTopology(t *testing.T) {
	for name, tc := range map[string]struct {
		node string
		topo broker.Topology
		ok   bool
	}{
		"single":                 {"", broker.Topology{}, true},
		"cluster node":           {"n1", broker.Topology{ClusterListen: "0.0.0.0:6222", Routes: []string{"nats://10.0.0.2:6222"}}, true},
		"cluster without name":   {"", broker.Topology{ClusterListen: "0.0.0.0:6222"}, false},
		"routes without cluster": {"n1", broker.Topology{Routes: []string{"nats://10.0.0.2:6222"}}, false},
		"hub":                    {"n1", broker.Topology{ClusterListen: "0.0.0.0:6222", LeafListen: "0.0.0.0:7422"}, true},
		"dr":                     {"dr1", broker.Topology{LeafRemotes: []string{"nats-leaf://10.0.0.1:7422"}, Domain: "dr"}, true},
	} {
		err := checkTopology(tc.node, tc.topo)
		if (err == nil) != tc.ok {
			t.Errorf("%s: %v", name, err)
		}
		var ue *usageError
		if err != nil && !errors.As(err, &ue) {
			t.Errorf("%s: %T, want a usage error", name, err)
		}
	}
}
