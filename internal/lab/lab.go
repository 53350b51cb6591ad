// Package lab runs a local fleet in one process: an embedded broker on a
// free loopback port and N responders (web1..webN, zones a/b/c, env=lab),
// each with its own host key, facts and audit log, plus an operator key
// trusted with the admin role and a client config that points at it all.
// Everything but the process boundary is the real thing: signatures, NATS,
// policy, audit and the registry.
package lab

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"golang.org/x/crypto/ssh"

	"github.com/signetbus/signet/agents"
	"github.com/signetbus/signet/internal/audit"
	"github.com/signetbus/signet/internal/broker"
	"github.com/signetbus/signet/internal/keys"
	"github.com/signetbus/signet/plugins"
)

// Options configure a lab.
type Options struct {
	// Dir holds keys, configs, audit logs and the broker store.
	Dir string
	// Hosts is the number of responders; default 3.
	Hosts int
	// Port is the broker's port; 0 picks a free one.
	Port int
	// Collective defaults to "lab".
	Collective string
	// Version is reported by the responders.
	Version string
	// Plugins builds the plugins of one host; nil enables only rpcutil.
	Plugins func(h *HostInfo) (map[string]plugins.Plugin, error)
	// Facts adds facts to one host.
	Facts func(h *HostInfo) map[string]string
	// Policy is the policy file content; default: role admin may run anything.
	Policy string
	// CA runs the lab in certificate mode (see ca.go): an SSH user CA
	// certifies the operator and a host CA each host, with ssh-keygen;
	// hosts and client trust the CAs, not each key.
	CA     bool
	Logger *slog.Logger
}

// HostInfo describes one lab host.
type HostInfo struct {
	Index    int // 1-based
	Identity string
	Zone     string
	Dir      string
	// BootID, when set, is the boot id the host registers with on its
	// next StartHost (a test simulates a reboot by changing it); default
	// the machine's.
	BootID string
}

// Lab is a running local fleet.
type Lab struct {
	Broker       *server.Server
	Dir          string
	ClientConfig string
	Hosts        []*HostInfo
	Collective   string

	runCtx context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	errs   []error
	conns  []*nats.Conn
	stops  map[string]context.CancelFunc
	done   map[string]chan struct{}
	hconns map[string]*nats.Conn // each host's current broker connection
	opts   Options
	keys   map[string]ssh.Signer
}

const defaultPolicy = `# lab policy: the operator key has role admin, which may run anything
# and sign revocations and locks
rules:
  - name: admin-all
    roles: [admin]
    allow: ["*"]
admin_roles: [admin]
`

// Start brings the lab up and returns when every responder is listening
// and registered.
func Start(ctx context.Context, o Options) (*Lab, error) {
	if o.Hosts <= 0 {
		o.Hosts = 3
	}
	if err := CheckHosts(o.Hosts); err != nil {
		return nil, err
	}
	if o.Collective == "" {
		o.Collective = "lab"
	}
	if o.Policy == "" {
		o.Policy = defaultPolicy
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	port := o.Port
	if port == 0 {
		port = -1
	}
	s, err := broker.Start(broker.Config{Port: port, StoreDir: filepath.Join(dir, "broker"), Name: "signet-lab"})
	if err != nil {
		return nil, err
	}
	l := &Lab{Broker: s, Dir: dir, Collective: o.Collective, opts: o, stops: map[string]context.CancelFunc{},
		done: map[string]chan struct{}{}, hconns: map[string]*nats.Conn{}, keys: map[string]ssh.Signer{}}
	if err := l.writeFiles(); err != nil {
		s.Shutdown()
		return nil, err
	}
	l.runCtx, l.cancel = context.WithCancel(context.Background())
	for _, h := range l.Hosts {
		if err := l.StartHost(h.Identity); err != nil {
			l.Stop()
			return nil, err
		}
	}
	if err := l.waitRegistered(ctx); err != nil {
		l.Stop()
		return nil, err
	}
	return l, nil
}

func (l *Lab) writeFiles() error {
	opKey := filepath.Join(l.Dir, "operator_key")
	if _, err := os.Stat(opKey); errors.Is(err, os.ErrNotExist) {
		if _, err := keys.Generate(opKey, "operator@lab", nil); err != nil {
			return err
		}
	}
	opPub, err := os.ReadFile(opKey + ".pub")
	if err != nil {
		return err
	}
	auth := "# lab operators\nroles=\"admin\",name=\"operator\" " + strings.TrimSpace(string(opPub)) + "\n"
	if l.opts.CA {
		line, err := l.caTrust(opKey)
		if err != nil {
			return err
		}
		auth = "# lab operators: every user certificate of the lab's user CA with principal admin\n" + line
	} else if err := os.Remove(opKey + keys.CertSuffix); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err // a certificate left by a --ca run would be presented, and refused
	}
	if err := os.WriteFile(filepath.Join(l.Dir, "authorized_keys"), []byte(auth), 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(l.Dir, "policy.yaml"), []byte(l.opts.Policy), 0o600); err != nil {
		return err
	}
	var known strings.Builder
	for i := 1; i <= l.opts.Hosts; i++ {
		h := &HostInfo{Index: i, Identity: fmt.Sprintf("web%d", i), Zone: string(rune('a' + (i-1)%3))}
		h.Dir = filepath.Join(l.Dir, "hosts", h.Identity)
		if err := os.MkdirAll(h.Dir, 0o700); err != nil {
			return err
		}
		hk, err := keys.LoadHostKey(filepath.Join(h.Dir, "host_key"))
		if err != nil {
			return err
		}
		l.keys[h.Identity] = hk
		if l.opts.CA {
			if err := l.certifyHost(h); err != nil {
				return err
			}
		} else {
			known.WriteString(keys.FormatKnownHost(h.Identity, hk.PublicKey()) + "\n")
		}
		l.Hosts = append(l.Hosts, h)
	}
	if l.opts.CA {
		line, err := l.hostCALine()
		if err != nil {
			return err
		}
		known.WriteString(line)
	}
	if err := os.WriteFile(filepath.Join(l.Dir, "known_hosts"), []byte(known.String()), 0o644); err != nil {
		return err
	}
	l.ClientConfig = filepath.Join(l.Dir, "client.yaml")
	client := fmt.Sprintf(`# written by signet lab
collective: %s
user: operator
key: operator_key
known_hosts: known_hosts
nats:
  urls: [%q]
timeout: 10s
discovery_timeout: 1s
`, l.Collective, l.Broker.ClientURL())
	return os.WriteFile(l.ClientConfig, []byte(client), 0o600)
}

func (l *Lab) hostConfig(h *HostInfo) *agents.Config {
	cert := ""
	if l.opts.CA {
		cert = filepath.Join(h.Dir, "host_key"+keys.CertSuffix)
	}
	return &agents.Config{
		HostCertificate: cert,
		Identity:        h.Identity, Collective: l.Collective,
		AuthorizedKeys: filepath.Join(l.Dir, "authorized_keys"), Policy: filepath.Join(l.Dir, "policy.yaml"),
		AuditLog: filepath.Join(h.Dir, "audit.jsonl"), MaxRequestBytes: 64 << 10,
		MaxTTL: agents.Duration(10 * time.Minute), ClockSkew: agents.Duration(30 * time.Second), ActionTimeout: agents.Duration(5 * time.Minute),
		MaxConcurrent: 8, RegistryTTL: agents.Duration(30 * time.Second), ShutdownTimeout: agents.Duration(time.Minute),
	}
}

// Host returns a host by identity.
func (l *Lab) Host(id string) *HostInfo {
	for _, h := range l.Hosts {
		if h.Identity == id {
			return h
		}
	}
	return nil
}

// StartHost starts (or restarts, after StopHost) one responder. It runs
// until StopHost or Stop.
func (l *Lab) StartHost(id string) error {
	ctx := l.runCtx
	h := l.Host(id)
	if h == nil {
		return fmt.Errorf("lab: no host %q", id)
	}
	cfg := l.hostConfig(h)
	var pl map[string]plugins.Plugin
	if l.opts.Plugins != nil {
		var err error
		if pl, err = l.opts.Plugins(h); err != nil {
			return fmt.Errorf("lab: %s: %w", id, err)
		}
	}
	f := map[string]string{"zone": h.Zone, "env": "lab", "role": "web"}
	if l.opts.Facts != nil {
		for k, v := range l.opts.Facts(h) {
			f[k] = v
		}
	}
	base, err := agents.HostFacts(&agents.Config{}, l.opts.Version)
	if err != nil {
		return err
	}
	for k, v := range f {
		base[k] = v
	}
	base["hostname"] = id
	log := l.opts.Logger.With("identity", id)
	host, err := agents.NewHost(agents.HostOptions{Identity: id, Collective: l.Collective, Version: l.opts.Version, Facts: base,
		Classes: []string{"web"}, Plugins: pl, AuthorizedKeys: cfg.AuthorizedKeys, Policy: cfg.Policy, ActionTimeout: cfg.ActionTimeout.D(), Logger: log})
	if err != nil {
		return err
	}
	aud, err := audit.Open(cfg.AuditLog)
	if err != nil {
		return err
	}
	nc, err := agents.Connect(agents.NATSConfig{URLs: []string{l.clientURL()}}, "signetd "+id, log)
	if err != nil {
		return err
	}
	hctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	started := make(chan struct{})
	l.mu.Lock()
	l.stops[id], l.done[id], l.hconns[id] = stop, done, nc
	l.conns = append(l.conns, nc)
	l.mu.Unlock()
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		defer close(done)
		defer aud.Close()
		defer host.Close()
		ready := func() { close(started) }                                                                                                                                                                                  // subscriptions flushed: requests from now on reach it
		if err := agents.Serve(hctx, agents.ServeOptions{Conn: nc, Host: host, HostKey: l.keys[id], Audit: aud, Config: cfg, Version: l.opts.Version, Logger: l.opts.Logger, Ready: ready, BootID: h.BootID}); err != nil { // Serve names the host
			l.mu.Lock()
			l.errs = append(l.errs, fmt.Errorf("%s: %w", id, err))
			l.mu.Unlock()
		}
		nc.Drain()
	}()
	select {
	case <-started:
	case <-done:
	}
	return nil
}

// StopHost stops one responder gracefully, as a killed or stopped signetd
// would leave the fleet.
func (l *Lab) StopHost(id string) {
	l.mu.Lock()
	stop, done := l.stops[id], l.done[id]
	l.mu.Unlock()
	if stop != nil {
		stop()
		<-done
	}
}

// KillHost ends one responder abruptly, as a crash or kill -9 of signetd
// would: its broker connection is closed at once, so it takes no new
// request and cannot reply to those in flight, and it is cancelled without
// waiting for its running actions. Unlike StopHost it does not leave the
// registry: its entry stays until it expires. StartHost brings it back.
func (l *Lab) KillHost(id string) {
	l.mu.Lock()
	stop, nc := l.stops[id], l.hconns[id]
	delete(l.hconns, id)
	l.mu.Unlock()
	if nc != nil {
		nc.Close()
	}
	if stop != nil {
		stop()
	}
}

// RestartBroker shuts the embedded broker down and starts a new one on the
// same port with the same JetStream store directory, as a broker restart
// would: every connection drops, the responders reconnect by themselves,
// and the KV buckets (registry, run state, locks) survive. Lab.Broker is
// the new server afterwards; do not read that field concurrently with
// RestartBroker.
func (l *Lab) RestartBroker() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	old := l.Broker
	addr, ok := old.Addr().(*net.TCPAddr)
	if !ok {
		// Already shut down (a test killed it): its URL still names the port.
		if u, err := url.Parse(old.ClientURL()); err == nil {
			if p, err := strconv.Atoi(u.Port()); err == nil && p > 0 {
				addr, ok = &net.TCPAddr{Port: p}, true
			}
		}
	}
	if !ok {
		return errors.New("lab: restart broker: the broker is not listening on TCP")
	}
	old.Shutdown()
	old.WaitForShutdown()
	var err error
	// The port was just freed; retry briefly in case the kernel holds it.
	for range 50 {
		var s *server.Server
		if s, err = broker.Start(broker.Config{Port: addr.Port, StoreDir: filepath.Join(l.Dir, "broker"), Name: "signet-lab"}); err == nil {
			l.Broker = s
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("lab: restart broker on port %d: %w", addr.Port, err)
}

func (l *Lab) clientURL() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.Broker.ClientURL()
}

func (l *Lab) waitRegistered(ctx context.Context) error {
	nc, err := nats.Connect(l.clientURL())
	if err != nil {
		return err
	}
	defer nc.Close()
	// Registration takes about a millisecond per host on a loaded
	// two-core machine; allow 30s plus 10ms per host.
	wait := 30*time.Second + time.Duration(len(l.Hosts))*10*time.Millisecond
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		if n, _ := l.registered(ctx, nc); n >= len(l.Hosts) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("lab: responders did not register within %s", wait)
}

// Stop stops every responder and the broker.
func (l *Lab) Stop() error {
	if l.cancel != nil {
		l.cancel()
	}
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.Broker.Shutdown()
	l.Broker.WaitForShutdown()
	return errors.Join(l.errs...)
}
