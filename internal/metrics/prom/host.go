package prom

import (
	"context"
	"log/slog"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/signetbus/signet/bus"
	"github.com/signetbus/signet/internal/metrics"
)

// Host holds one signetd's metrics (names start with signetd_). Its
// request metrics come from the audit records the responder writes (see
// Auditor): every decision signetd takes is audited, so the counters see
// exactly what the audit log sees.
type Host struct {
	reg *prometheus.Registry

	requests      *prometheus.CounterVec
	refusals      *prometheus.CounterVec
	duration      *prometheus.HistogramVec
	pluginErrors  *prometheus.CounterVec
	auditErrors   prometheus.Counter
	regFailures   prometheus.Counter
	registered    prometheus.Gauge
	regLastUpdate prometheus.Gauge

	// known reports whether this host offers agent.action: only those
	// become label values, so that messages naming made-up agents (anyone
	// on the broker can send them) cannot grow the label sets.
	known func(agent, action string) bool
}

// Buckets of signetd_action_duration_seconds: from a fact lookup to a
// package upgrade.
var actionBuckets = []float64{0.005, 0.025, 0.1, 0.25, 1, 2.5, 10, 30, 60, 300}

// Export builds a host's registry (its own metrics, the Go runtime's and
// the process's) and serves it on o.Listen until ctx ends.
func Export(ctx context.Context, o metrics.HostOptions) (metrics.Host, error) {
	h := NewHost(o)
	srv, err := Listen(o.Listen, o.AllowRemote, h.reg, o.Logger)
	if err != nil {
		return nil, err
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	go func() {
		if err := srv.Serve(ctx); err != nil {
			log.Error("metrics endpoint stopped", "err", err)
		}
	}()
	log.Info("serving metrics", "url", "http://"+srv.Addr().String()+"/metrics")
	return h, nil
}

var _ metrics.Exporter = Export

// NewHost builds a host's registry: its own metrics, the Go runtime's and
// the process's.
func NewHost(o metrics.HostOptions) *Host {
	h := &Host{reg: prometheus.NewRegistry(), known: o.Known}
	f := func(c prometheus.Collector) { h.reg.MustRegister(c) }
	h.requests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "signetd_requests_total",
		Help: "Requests by agent, action and decision (accepted, refused, dropped, duplicate, suppressed); agent and action are empty for a request that names no agent.action this host offers."},
		[]string{"agent", "action", "decision"})
	h.refusals = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "signetd_refusals_total",
		Help: "Requests refused or dropped, by reason (the reply code: denied, untrusted, bad_signature, expired, replay, ...)."},
		[]string{"reason"})
	h.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "signetd_action_duration_seconds",
		Help: "How long actions that ran took, by agent and action.", Buckets: actionBuckets},
		[]string{"agent", "action"})
	h.pluginErrors = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "signetd_plugin_errors_total",
		Help: "Actions that ran and failed, by agent, action and code (failed, timeout, ...)."},
		[]string{"agent", "action", "code"})
	h.auditErrors = prometheus.NewCounter(prometheus.CounterOpts{Name: "signetd_audit_write_errors_total",
		Help: "Audit records that could not be written (an action whose record fails is refused)."})
	h.regFailures = prometheus.NewCounter(prometheus.CounterOpts{Name: "signetd_registry_refresh_failures_total",
		Help: "Failed writes of this host's entry in the fleet registry."})
	h.registered = prometheus.NewGauge(prometheus.GaugeOpts{Name: "signetd_registry_registered",
		Help: "1 when the last write of this host's registry entry succeeded, 0 otherwise."})
	h.regLastUpdate = prometheus.NewGauge(prometheus.GaugeOpts{Name: "signetd_registry_last_refresh_timestamp_seconds",
		Help: "When this host's registry entry was last written successfully (Unix seconds)."})
	build := prometheus.NewGauge(prometheus.GaugeOpts{Name: "signetd_build_info",
		Help:        "signetd's version and the protocol version it speaks; always 1.",
		ConstLabels: prometheus.Labels{"version": o.Version, "protocol": strconv.Itoa(bus.ProtocolVersion)}})
	build.Set(1)
	for _, c := range []prometheus.Collector{h.requests, h.refusals, h.duration, h.pluginErrors, h.auditErrors,
		h.regFailures, h.registered, h.regLastUpdate, build,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})} {
		f(c)
	}
	return h
}

// Registry is the host's registry, to serve.
func (h *Host) Registry() *prometheus.Registry { return h.reg }

// Auditor returns next, counting every record written through it.
func (h *Host) Auditor(next bus.Auditor) bus.Auditor { return &auditor{h: h, next: next} }

type auditor struct {
	h    *Host
	next bus.Auditor
}

func (a *auditor) Audit(rec *bus.AuditRecord) error {
	err := a.next.Audit(rec)
	if err != nil {
		a.h.auditErrors.Inc()
	}
	a.h.observe(rec)
	return err
}

// observe counts one audit record.
func (h *Host) observe(rec *bus.AuditRecord) {
	agent, action := "", ""
	if rec.Principal != "" && h.known != nil && h.known(rec.Agent, rec.Action) {
		agent, action = rec.Agent, rec.Action
	}
	switch rec.Decision {
	case bus.DecisionStarted:
		// The same request's "accepted" or "refused" record follows.
		return
	case bus.DecisionSuppressed:
		// A window's unauthenticated messages not recorded one by one.
		total := 0
		for code, n := range rec.Suppressed {
			total += n
			h.refusals.WithLabelValues(code).Add(float64(n))
		}
		h.requests.WithLabelValues("", "", rec.Decision).Add(float64(total))
		return
	}
	h.requests.WithLabelValues(agent, action, rec.Decision).Inc()
	switch {
	case rec.Decision == bus.DecisionRefused || rec.Decision == bus.DecisionDropped:
		reason := rec.Code
		if reason == "" {
			reason = rec.Decision
		}
		h.refusals.WithLabelValues(reason).Inc()
	case rec.Decision == bus.DecisionAccepted:
		h.duration.WithLabelValues(agent, action).Observe(float64(rec.DurationMS) / 1000)
		if rec.Status == bus.StatusFailed {
			code := rec.Code
			if code == "" {
				code = bus.CodeFailed
			}
			h.pluginErrors.WithLabelValues(agent, action, code).Inc()
		}
	}
}

// Registered records the outcome of one write of the host's registry
// entry.
func (h *Host) Registered(err error, now time.Time) {
	if err != nil {
		h.regFailures.Inc()
		h.registered.Set(0)
		return
	}
	h.registered.Set(1)
	h.regLastUpdate.Set(float64(now.UnixNano()) / 1e9)
}

// WatchConn exports the broker connection's state: connected or not, and
// how often it reconnected.
func (h *Host) WatchConn(nc *nats.Conn) {
	h.reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "signetd_broker_reconnects_total",
			Help: "Reconnections to the broker since signetd started."},
			func() float64 { return float64(nc.Stats().Reconnects) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "signetd_broker_connected",
			Help: "1 while signetd is connected to a broker."},
			func() float64 {
				if nc.IsConnected() {
					return 1
				}
				return 0
			}))
}

// WatchAuditShipping exports how far audit shipping lags behind the log:
// written is the seq of the last line written, shipped the last one the
// broker acknowledged.
func (h *Host) WatchAuditShipping(written, shipped func() uint64) {
	h.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "signetd_audit_written_seq",
			Help: "Seq of the last line written to the audit log."},
			func() float64 { return float64(written()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "signetd_audit_shipped_seq",
			Help: "Seq of the last audit line the broker acknowledged."},
			func() float64 { return float64(shipped()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "signetd_audit_unshipped_records",
			Help: "Audit lines written but not yet acknowledged by the broker (the shipping lag)."},
			func() float64 {
				w, s := written(), shipped()
				if s >= w {
					return 0
				}
				return float64(w - s)
			}))
}
