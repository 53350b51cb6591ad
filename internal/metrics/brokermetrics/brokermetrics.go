// Package brokermetrics serves the Prometheus metrics of the NATS server
// that `signet broker` embeds, read from the server's own monitoring data
// (Varz, Jsz, Routez, Leafz) at each scrape and written with promtext.
//
// The official client library is not used: `signet broker` is a command of
// the operator CLI, and every signet command would pay for that library's
// init (package metrics). Like signetd's metrics, these are off by default,
// served on GET /metrics only, and bound to a loopback address unless the
// operator allows another one (docs/operations.md "Metrics").
package brokermetrics

import (
	"bytes"
	"log/slog"
	"net/http"
	"slices"
	"strings"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/signetbus/signet/internal/metrics"
	"github.com/signetbus/signet/internal/metrics/promtext"
)

// registryStreamPrefix names the JetStream streams of signet's host
// registries: the KV bucket signet_registry_COLLECTIVE (bus.RegistryBucket).
const registryStreamPrefix = "KV_signet_registry_"

// Collect reads the server's monitoring data into metric families. A part
// the server cannot report (JetStream off, a monitoring call failing) is
// left out rather than failing the whole scrape.
func Collect(s *server.Server) []promtext.Family {
	var fams []promtext.Family
	add := func(name, help string, t promtext.Type, samples ...promtext.Sample) {
		fams = append(fams, promtext.Family{Name: name, Help: help, Type: t, Samples: samples})
	}
	one := func(v promtext.Value, labels ...promtext.Label) promtext.Sample {
		return promtext.Sample{Labels: labels, Value: v}
	}
	lbl := func(name, value string) promtext.Label { return promtext.Label{Name: name, Value: value} }
	g, c := promtext.Gauge, promtext.Counter
	I, U := promtext.Int, promtext.Uint

	v, err := s.Varz(nil)
	if err != nil {
		return nil
	}
	domain := ""
	if jc := v.JetStream.Config; jc != nil {
		domain = jc.Domain
	}
	add("signet_broker_info", "The embedded NATS server: name, id, version, cluster and JetStream domain.", g,
		one(U(1), lbl("server_name", v.Name), lbl("server_id", v.ID), lbl("version", v.Version), lbl("cluster", v.Cluster.Name), lbl("domain", domain)))
	add("signet_broker_start_time_seconds", "When the server started, in seconds since the Unix epoch.", g,
		one(promtext.Float(float64(v.Start.UnixNano())/1e9)))
	add("signet_broker_resident_memory_bytes", "The broker process's resident memory, in bytes.", g, one(I(v.Mem)))
	add("signet_broker_connections", "Client connections open now.", g, one(I(int64(v.Connections))))
	add("signet_broker_connections_total", "Client connections accepted since the server started.", c, one(U(v.TotalConnections)))
	add("signet_broker_subscriptions", "Subscriptions active now.", g, one(U(uint64(v.Subscriptions))))
	add("signet_broker_in_messages_total", "Messages received (from clients, routes, leafnodes and gateways).", c, one(I(v.InMsgs)))
	add("signet_broker_out_messages_total", "Messages sent.", c, one(I(v.OutMsgs)))
	add("signet_broker_in_bytes_total", "Payload bytes received.", c, one(I(v.InBytes)))
	add("signet_broker_out_bytes_total", "Payload bytes sent.", c, one(I(v.OutBytes)))
	if sc := v.SlowConsumersStats; sc != nil {
		add("signet_broker_slow_consumers_total", "Connections the server found too slow to read what it sent them (and cut), by kind.", c,
			one(U(sc.Clients), lbl("kind", "client")), one(U(sc.Routes), lbl("kind", "route")),
			one(U(sc.Leafs), lbl("kind", "leafnode")), one(U(sc.Gateways), lbl("kind", "gateway")))
	} else {
		add("signet_broker_slow_consumers_total", "Connections the server found too slow to read what it sent them (and cut), by kind.", c,
			one(I(v.SlowConsumers), lbl("kind", "all")))
	}
	add("signet_broker_stale_connections_total", "Connections closed as stale (pings unanswered).", c, one(I(v.StaleConnections)))

	// Cluster routes: connections (a pool per remote), and which remote
	// servers are connected.
	add("signet_broker_routes", "Route connections to other cluster nodes open now (several per remote with a route pool).", g, one(I(int64(v.Routes))))
	if rz, err := s.Routez(nil); err == nil {
		var remotes []string
		for _, r := range rz.Routes {
			name := r.RemoteName
			if name == "" {
				name = r.RemoteID
			}
			if !slices.Contains(remotes, name) {
				remotes = append(remotes, name)
			}
		}
		slices.Sort(remotes)
		add("signet_broker_route_peers", "Distinct cluster nodes connected by at least one route.", g, one(I(int64(len(remotes)))))
		var ss []promtext.Sample
		for _, r := range remotes {
			ss = append(ss, one(U(1), lbl("remote", r)))
		}
		add("signet_broker_route_connected", "1 for each cluster node connected by a route now (a node that goes away drops out).", g, ss...)
	}

	// Leafnodes: connections accepted (a hub) and remotes dialled (a DR
	// site), against the remotes configured.
	add("signet_broker_leafnodes", "Leafnode connections open now, both accepted and dialled.", g, one(I(int64(v.Leafs))))
	add("signet_broker_leafnode_remotes_configured", "Leafnode remotes this server is configured to dial.", g, one(I(int64(len(v.LeafNode.Remotes)))))
	if lz, err := s.Leafz(nil); err == nil {
		dialled := 0
		var ss []promtext.Sample
		for _, l := range lz.Leafs {
			dir := "accepted"
			if l.IsSpoke {
				dialled++
				dir = "dialled"
			}
			ss = append(ss, one(U(1), lbl("remote", l.Name), lbl("account", l.Account), lbl("direction", dir)))
		}
		add("signet_broker_leafnode_remotes_connected", "Leafnode remotes this server dialled that are connected now.", g, one(I(int64(dialled))))
		add("signet_broker_leafnode_connected", "1 for each leafnode connection open now, by remote server, account and direction.", g, ss...)
	}

	collectJetStream(s, v.Name, add, one, lbl)
	return fams
}

func collectJetStream(s *server.Server, self string,
	add func(string, string, promtext.Type, ...promtext.Sample),
	one func(promtext.Value, ...promtext.Label) promtext.Sample,
	lbl func(string, string) promtext.Label) {
	g, c := promtext.Gauge, promtext.Counter
	I, U := promtext.Int, promtext.Uint
	jz, err := s.Jsz(&server.JSzOptions{Accounts: true, Streams: true})
	if err != nil || jz.Disabled {
		add("signet_broker_jetstream_enabled", "1 when JetStream runs on this server.", g, one(U(0)))
		return
	}
	add("signet_broker_jetstream_enabled", "1 when JetStream runs on this server.", g, one(U(1)))
	add("signet_broker_jetstream_streams", "JetStream streams (KV buckets included) on this server.", g, one(I(int64(jz.Streams))))
	add("signet_broker_jetstream_consumers", "JetStream consumers on this server.", g, one(I(int64(jz.Consumers))))
	add("signet_broker_jetstream_messages", "Messages stored in this server's streams.", g, one(U(jz.Messages)))
	add("signet_broker_jetstream_stored_bytes", "Bytes stored in this server's streams.", g, one(U(jz.Bytes)))
	add("signet_broker_jetstream_storage_used_bytes", "File storage used, in bytes.", g, one(U(jz.Store)))
	add("signet_broker_jetstream_storage_reserved_bytes", "File storage reserved by streams with a size limit, in bytes.", g, one(U(jz.ReservedStore)))
	add("signet_broker_jetstream_storage_limit_bytes", "File storage JetStream may use on this server, in bytes.", g, one(I(jz.Config.MaxStore)))
	add("signet_broker_jetstream_memory_used_bytes", "Memory storage used, in bytes.", g, one(U(jz.Memory)))
	add("signet_broker_jetstream_memory_reserved_bytes", "Memory storage reserved by streams with a size limit, in bytes.", g, one(U(jz.ReservedMemory)))
	add("signet_broker_jetstream_memory_limit_bytes", "Memory storage JetStream may use on this server, in bytes.", g, one(I(jz.Config.MaxMemory)))
	add("signet_broker_jetstream_api_requests_total", "JetStream API requests received.", c, one(U(jz.API.Total)))
	add("signet_broker_jetstream_api_errors_total", "JetStream API requests answered with an error.", c, one(U(jz.API.Errors)))
	add("signet_broker_jetstream_api_requests_in_flight", "JetStream API requests being served now.", g, one(U(jz.API.Inflight)))
	if m := jz.Meta; m != nil {
		add("signet_broker_jetstream_cluster_size", "Servers in the JetStream meta group.", g, one(I(int64(m.Size))))
		add("signet_broker_jetstream_meta_leader", "1 when this server leads the JetStream meta group.", g, one(promtext.Bool(m.Leader != "" && m.Leader == self)))
		add("signet_broker_jetstream_meta_has_leader", "1 when the JetStream meta group has a leader (0: no quorum, no stream or bucket can be changed).", g, one(promtext.Bool(m.Leader != "")))
		var ss []promtext.Sample
		for _, p := range m.Replicas {
			if p == nil || p.Name == self {
				continue
			}
			ss = append(ss, one(promtext.Bool(!p.Offline), lbl("peer", p.Name)))
		}
		add("signet_broker_jetstream_peer_up", "For each other server of the JetStream meta group: 1 when it is seen, 0 when offline.", g, ss...)
	}
	// signet's own view: hosts in each collective's registry, counted as the
	// stream's subjects (a host that left keeps its delete marker until the
	// bucket's TTL; reading every entry's last operation would cost a read
	// per host per scrape). On a locked-down broker only provisioning
	// creates streams, so the collectives are the operator's; on an open
	// one any client could add buckets, and labels, as it can add anything.
	var reg []promtext.Sample
	for _, a := range jz.AccountDetails {
		for _, st := range a.Streams {
			if col, ok := strings.CutPrefix(st.Name, registryStreamPrefix); ok {
				reg = append(reg, one(I(int64(st.State.NumSubjects)), lbl("collective", col)))
			}
		}
	}
	slices.SortFunc(reg, func(a, b promtext.Sample) int { return strings.Compare(a.Labels[0].Value, b.Labels[0].Value) })
	add("signet_broker_registry_entries", "Keys in each collective's registry bucket on this server: the hosts registered, plus those that left within the bucket's TTL (their delete marker).", g, reg...)
}

// maxScrapesInFlight bounds the scrapes served at once, as signetd's
// exporter does: a flood of requests on the metrics port is answered 503
// beyond it instead of reading the server's state for each.
const maxScrapesInFlight = 4

// Handler serves the metrics of s in the text format.
func Handler(s *server.Server, log *slog.Logger) http.Handler {
	return &handler{s: s, log: log, sem: make(chan struct{}, maxScrapesInFlight)}
}

type handler struct {
	s   *server.Server
	log *slog.Logger
	sem chan struct{}
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	select {
	case h.sem <- struct{}{}:
		defer func() { <-h.sem }()
	default:
		http.Error(w, "metrics: too many scrapes in flight", http.StatusServiceUnavailable)
		return
	}
	var b bytes.Buffer
	if err := promtext.Write(&b, Collect(h.s)); err != nil {
		h.log.Warn("broker metrics", "error", err)
		http.Error(w, "metrics: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", promtext.ContentType)
	w.Write(b.Bytes())
}

// Server serves a broker's metrics over HTTP.
type Server = metrics.Server

// Listen checks addr (metrics.CheckListen) and binds it, so that a port in
// use stops the broker's start-up rather than leaving it unobserved.
func Listen(addr string, allowRemote bool, s *server.Server, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return metrics.Listen(addr, allowRemote, Handler(s, log), log)
}
