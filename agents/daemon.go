package agents

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"golang.org/x/crypto/ssh"

	"github.com/signetbus/signet/bus"
	"github.com/signetbus/signet/internal/audit"
	"github.com/signetbus/signet/internal/facts"
	"github.com/signetbus/signet/internal/keys"
	"github.com/signetbus/signet/internal/metrics"
	"github.com/signetbus/signet/internal/redact"
	"github.com/signetbus/signet/internal/shard"
	"github.com/signetbus/signet/internal/yamlerr"
	"github.com/signetbus/signet/plugins"
	"github.com/signetbus/signet/plugins/external"
)

// LoadPlugins builds the plugins a config enables, from the whitelist and
// the external plugin directory.
func LoadPlugins(cfg *Config) (map[string]plugins.Plugin, error) {
	out := map[string]plugins.Plugin{}
	for _, name := range slices.Sorted(maps.Keys(cfg.Plugins)) {
		info, ok := plugins.Lookup(name)
		if !ok {
			return nil, fmt.Errorf("plugin %q is not in this signetd's whitelist (available: %s)", name, strings.Join(plugins.Names(), ", "))
		}
		raw, err := pluginConfig(cfg.Plugins[name])
		if err != nil {
			return nil, fmt.Errorf("plugin %s: config: %w", name, err)
		}
		p, err := info.New(raw)
		if err != nil {
			section := cfg.Plugins[name]
			return nil, fmt.Errorf("plugin %s: %w", name, yamlerr.Section(cfg.file, &section, "plugins."+name, err))
		}
		out[name] = p
	}
	if cfg.ExternalDir != "" {
		ext, err := external.Load(cfg.ExternalDir, external.Options{})
		if err != nil {
			return nil, err
		}
		for name, p := range ext {
			if _, dup := out[name]; dup || name == "rpcutil" {
				return nil, fmt.Errorf("external plugin %q in %s clashes with a built-in plugin", name, cfg.ExternalDir)
			}
			out[name] = p
		}
	}
	return out, nil
}

// HostFacts gathers built-in facts, fact files and the config's facts.
func HostFacts(cfg *Config, version string) (map[string]string, error) {
	fromFiles, err := facts.FromFiles(cfg.FactFiles)
	if err != nil {
		return nil, err
	}
	for k := range cfg.Facts {
		if err := facts.Check(k); err != nil {
			return nil, err
		}
	}
	return facts.Merge(facts.Builtin(version), fromFiles, cfg.Facts), nil
}

// RunOptions are the parts of a daemon that do not come from its config.
type RunOptions struct {
	Version string
	Logger  *slog.Logger
	// Reload is signalled on SIGHUP: trust, policy and the audit log are
	// reopened without dropping requests in flight.
	Reload <-chan struct{}
	// Metrics serves the metrics when the config sets metrics_listen (the
	// signetd binary passes the Prometheus exporter, metrics/prom); nil
	// refuses such a config.
	Metrics metrics.Exporter
}

// Run is signetd: it loads everything the config names, connects to the
// broker (retrying forever with backoff) and serves until ctx ends, then
// finishes in-flight actions and leaves the registry.
func Run(ctx context.Context, cfg *Config, o RunOptions) error {
	log := redact.Logger(o.Logger)
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// Serve gets the logger without the identity: the responder adds it
	// itself (the lab runs it without Run), and a JSON line must not
	// carry a key twice.
	serveLog := log
	log = log.With("identity", cfg.Identity)
	// The same checks as signetd --check, before any side effect.
	host, err := prepare(cfg, o.Version, log)
	if err != nil {
		return err
	}
	defer host.Close()
	hostKey, err := keys.LoadHostKey(cfg.HostKey)
	if err != nil {
		return fmt.Errorf("host key: %w", err)
	}
	plainKey := hostKey // audit checkpoints are signed by the key itself
	if cfg.HostCertificate != "" {
		if hostKey, err = keys.LoadHostCertificate(cfg.HostCertificate, hostKey, cfg.Identity); err != nil {
			return fmt.Errorf("host certificate: %w", err)
		}
	}
	aud, err := audit.Open(cfg.AuditLog)
	if err != nil {
		return err
	}
	defer aud.Close()
	met, err := startMetrics(ctx, cfg, host, o.Metrics, o.Version, log)
	if err != nil {
		return err
	}
	nc, err := Connect(cfg.NATS, "signetd "+cfg.Identity, log)
	if err != nil {
		return err
	}
	defer nc.Close()
	if met != nil {
		met.WatchConn(nc)
	}
	defer startAuditChain(ctx, cfg, aud, plainKey, nc, log, met)()
	reload := o.Reload
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-reload:
				if err := host.Reload(); err != nil {
					log.Error("reload failed, keeping the previous trust and policy", "err", err)
				}
				if err := aud.Reopen(); err != nil {
					log.Error("reopen audit log", "err", err)
				}
			}
		}
	}()
	log.Info("signetd starting", "collective", cfg.Collective, "agents", host.Node().Agents, "host_key", keys.Fingerprint(hostKey.PublicKey()))
	return Serve(ctx, ServeOptions{Conn: nc, Host: host, HostKey: hostKey, Audit: aud, Config: cfg, Version: o.Version, Logger: serveLog, Metrics: met})
}

// ServeOptions wire one host to a broker connection.
type ServeOptions struct {
	Conn    *nats.Conn
	Host    *Host
	HostKey ssh.Signer
	Audit   bus.Auditor
	Config  *Config
	Version string
	Logger  *slog.Logger
	// Ready, when set, is called once the responder's subscriptions have
	// reached the broker: a request sent after it is not lost.
	Ready func()
	// Metrics, when set, counts requests and registry refreshes.
	Metrics metrics.Host
	// BootID is published in the registry entry; default: read from
	// /proc/sys/kernel/random/boot_id (empty when it cannot be read).
	BootID string
}

// Serve runs the responder and the registry refresh for one host until ctx
// ends, then shuts down gracefully. The lab runs many of these on one
// connection.
func Serve(ctx context.Context, o ServeOptions) error {
	cfg := o.Config
	log := redact.Logger(o.Logger)
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if aud, ok := o.Audit.(*audit.Log); ok && aud.Sensitive == nil {
		aud.Sensitive = o.Host.SensitiveParams // never write a declared secret
	}
	aud := o.Audit
	if o.Metrics != nil {
		aud = o.Metrics.Auditor(aud)
	}
	responderLog := log // the responder names the host itself
	log = log.With("identity", o.Host.Node().Identity)
	r, err := bus.NewResponder(bus.ResponderConfig{
		Conn: o.Conn, Collective: cfg.Collective, HostKey: o.HostKey, Node: o.Host.Node,
		Trust: o.Host, Handler: o.Host, Audit: aud, Logger: responderLog,
		MaxRequestBytes: cfg.MaxRequestBytes, MaxTTL: cfg.MaxTTL.D(), ClockSkew: cfg.ClockSkew.D(), MaxConcurrent: cfg.MaxConcurrent,
		ReplayCacheSize: cfg.ReplayCacheSize, ReplayKeyShare: cfg.ReplayKeyShare,
		FloodWindow: cfg.FloodWindow.D(), FloodRecords: cfg.FloodRecords, FloodReplies: cfg.FloodReplies,
		Shards: shard.Sizes, // and the registry entry says so (registrar.refresh)
	})
	if err != nil {
		return err
	}
	if err := r.Start(); err != nil {
		return err
	}
	go o.Host.watchControl(ctx, o.Conn, cfg.NATS.Replicas, o.Audit, log) // revocations and locks
	reg := &registrar{conn: o.Conn, host: o.Host, hostKey: o.HostKey, cfg: cfg, version: o.Version, log: log, started: time.Now(), metrics: o.Metrics, bootID: o.BootID}
	if reg.bootID == "" {
		reg.bootID, _ = facts.BootID(facts.BootIDFile)
	}
	// Registered before Ready: clients refuse a direct request to a host
	// the registry does not know (bus/unregistered.go). The loop below
	// retries a first write that fails.
	fctx, fcancel := context.WithTimeout(ctx, 2*time.Second)
	reg.refresh(fctx)
	fcancel()
	if o.Ready != nil {
		o.Ready()
	}
	regDone := make(chan struct{})
	go func() { defer close(regDone); reg.loop(ctx) }()
	<-ctx.Done()
	log.Info("shutting down: finishing actions in flight")
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout.D())
	defer cancel()
	err = r.Shutdown(sctx)
	<-regDone
	reg.leave()
	return err
}

// registrar keeps the host's entry in the fleet registry fresh.
type registrar struct {
	conn    *nats.Conn
	host    *Host
	hostKey ssh.Signer
	cfg     *Config
	version string
	log     *slog.Logger
	started time.Time
	reg     *bus.Registry
	metrics metrics.Host // nil: no metrics
	bootID  string
}

// loop refreshes the registration every third of the registry TTL, at
// once after a reconnect (the broker may have restarted without its
// storage, and the registry with it), and retries a failed refresh after
// 1 s, 2 s, 4 s, ... up to 5 s.
func (g *registrar) loop(ctx context.Context) {
	every := g.cfg.RegistryTTL.D() / 3
	const maxBackoff = 5 * time.Second
	backoff := time.Second
	poll := time.NewTicker(min(time.Second, every))
	defer poll.Stop()
	for {
		reconnects := g.conn.Stats().Reconnects
		err := g.refresh(ctx)
		if g.metrics != nil {
			g.metrics.Registered(err, time.Now())
		}
		if err != nil {
			g.log.Warn("registry refresh failed; will retry", "err", err)
			wait := backoff + time.Duration(rand.Int64N(int64(backoff/2)+1))
			backoff = min(backoff*2, maxBackoff, every)
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			continue
		}
		backoff = time.Second
		next := time.Now().Add(every)
		for time.Now().Before(next) && g.conn.Stats().Reconnects == reconnects {
			select {
			case <-ctx.Done():
				return
			case <-poll.C:
			}
		}
	}
}

// refresh writes the registration. Any failure drops the registry handle,
// so the next attempt creates the bucket again when the broker lost it
// ("stream not found" after a restart without its storage).
func (g *registrar) refresh(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if g.reg == nil {
		reg, err := bus.CreateRegistry(ctx, g.conn, g.cfg.Collective, g.cfg.RegistryTTL.D(), g.cfg.NATS.Replicas)
		if err != nil {
			return err
		}
		g.reg = reg
	}
	n := g.host.Node()
	err := g.reg.Put(ctx, g.hostKey, &bus.Registration{
		Identity: n.Identity, Collective: g.cfg.Collective, Facts: n.Facts, Agents: n.Agents, Classes: n.Classes,
		HostKey: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(g.hostKey.PublicKey()))), Version: g.version, Protocol: bus.ProtocolVersion,
		Started: g.started, Updated: time.Now(), BootID: g.bootID,
		Shards: shard.Sizes, // the responder listens on them (Serve)
	})
	if err != nil {
		g.reg = nil
	}
	return err
}

func (g *registrar) leave() {
	if g.reg == nil || !g.conn.IsConnected() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := g.reg.Delete(ctx, g.host.Node().Identity); err != nil {
		g.log.Warn("leave registry", "err", err)
	}
}

// Connect dials the broker and keeps reconnecting forever, about every
// second with jitter (see reconnectDelay), so a broker restart never needs
// a daemon restart and the host is subscribed again as soon as the client
// is. Failed attempts are logged at warn level with the broker URL and the
// reason, at exponentially spaced attempts. The first connection is
// retried too.
func Connect(c NATSConfig, name string, log *slog.Logger) (*nats.Conn, error) {
	rl := newReconnectLog(log, c.URLs)
	opts := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.RetryOnFailedConnect(true),
		nats.CustomReconnectDelay(reconnectDelay),
		nats.ReconnectBufSize(8 << 20),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("disconnected from broker", "url", rl.urls, "err", err)
			}
		}),
		nats.ReconnectErrHandler(rl.failed),
		nats.ReconnectHandler(rl.reconnected),
	}
	auth, err := c.AuthOptions()
	if err != nil {
		return nil, err
	}
	opts = append(opts, auth...)
	nc, err := nats.Connect(strings.Join(c.URLs, ","), opts...)
	if err != nil && !errors.Is(err, nats.ErrNoServers) {
		return nil, fmt.Errorf("connect to %s: %w", strings.Join(c.URLs, ","), err)
	}
	return nc, nil
}
