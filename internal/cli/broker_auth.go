package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/signetbus/signet/internal/broker"
	"github.com/signetbus/signet/internal/broker/provision"
)

// brokerAuthOptions lock `signet broker` down: the users and permissions
// `signet broker init` wrote, and TLS.
type brokerAuthOptions struct {
	auth        string
	collectives []string
	registryTTL time.Duration
	tlsCert     string
	tlsKey      string
	tlsClientCA string
}

func addBrokerAuthFlags(f *pflag.FlagSet, o *brokerAuthOptions) {
	f.StringVar(&o.auth, "auth", "", "directory `signet broker init` wrote: only its users may connect, with their permissions (and TLS from its tls/ unless --tls-cert is given)")
	f.StringArrayVar(&o.collectives, "collective", []string{"signet"}, "collective whose buckets a locked-down broker creates (with --auth; repeatable: the collectives this broker serves)")
	f.DurationVar(&o.registryTTL, "registry-ttl", 90*time.Second, "registry bucket TTL a locked-down broker creates; must equal the hosts' registry_ttl")
	f.StringVar(&o.tlsCert, "tls-cert", "", "server certificate (PEM): accept TLS connections only")
	f.StringVar(&o.tlsKey, "tls-key", "", "server certificate's key (PEM)")
	f.StringVar(&o.tlsClientCA, "tls-client-ca", "", "require client certificates signed by this CA (PEM)")
}

// apply sets the broker's auth and TLS files.
func (o *brokerAuthOptions) apply(cfg *broker.Config) error {
	if o.auth != "" {
		cfg.AuthConfig = broker.AuthConfigPath(o.auth)
		if _, err := os.Stat(cfg.AuthConfig); err != nil {
			return withHint(fmt.Errorf("broker auth: %w", err), "write it with `signet broker init "+o.auth+" --admin NAME --client NAME --host IDENTITY ...`")
		}
		if o.tlsCert == "" && o.tlsKey == "" {
			if lab := broker.LabTLS(o.auth); fileExists(lab.Cert) {
				o.tlsCert, o.tlsKey = lab.Cert, lab.Key
			}
		}
	}
	cfg.TLSCert, cfg.TLSKey, cfg.TLSClientCA = o.tlsCert, o.tlsKey, o.tlsClientCA
	if o.auth != "" {
		cfg.Provision = func(s *server.Server) error { return o.provision(context.Background(), s) }
	}
	return nil
}

// warning says what a half locked-down broker leaves open.
func (o *brokerAuthOptions) warning() string {
	if o.auth != "" && o.tlsCert == "" {
		return "warning: users and permissions without TLS: anyone on the network path reads requests and replies; add --tls-cert and --tls-key"
	}
	return ""
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// provision creates the collective's buckets as the broker's own admin
// user, in-process, so that hosts and operators only open them. The
// broker runs it before it accepts clients (broker.Config.Provision).
func (o *brokerAuthOptions) provision(ctx context.Context, s *server.Server) error {
	seed := broker.SeedPath(o.auth, broker.BrokerUser)
	opt, err := nats.NkeyOptionFromSeed(seed)
	if err != nil {
		return fmt.Errorf("broker: its own user %s: %w", seed, err)
	}
	nc, err := nats.Connect("", nats.InProcessServer(s), opt, nats.Name("signet broker provisioning"))
	if err != nil {
		return fmt.Errorf("broker: connect to provision buckets: %w", err)
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for _, c := range o.collectives {
		if err := provision.Buckets(ctx, nc, provision.Options{Collective: c, RegistryTTL: o.registryTTL}); err != nil {
			return err
		}
	}
	return nil
}

type brokerInitOptions struct {
	dir         string
	spec        broker.AuthSpec
	collectives []string
	domains     []string
	tlsNames    []string
	noTLS       bool
	tlsDays     int
	brokerURLs  []string
}

func newBrokerInitCmd(g *globalOptions) *cobra.Command {
	o := &brokerInitOptions{}
	c := &cobra.Command{
		Use:   "init DIR",
		Short: "Write users, subject permissions and TLS files for a locked-down broker",
		Long: `init writes, in DIR, an nkey seed per user (users/NAME.nk, mode 0600), auth.conf
(the users and their subject permissions, in nats-server syntax) and, unless
--no-tls, a CA and a server certificate (tls/). Start the broker with
` + "`signet broker --auth DIR`" + `, or include auth.conf in an existing nats-server.conf.
Running it again with more users keeps the existing seeds.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.dir = args[0]
			return brokerInitRun(cmd.Context(), g, o)
		},
	}
	f := c.Flags()
	f.StringArrayVar(&o.collectives, "collective", []string{"signet"}, "collective the permissions are for (repeatable: the first is this broker's own, whose hosts connect to it; operators reach every one)")
	f.StringArrayVar(&o.domains, "jetstream-domain", nil, "COLLECTIVE=DOMAIN: that collective's buckets are on a DR broker joined as a leafnode with --domain DOMAIN (repeatable; as the client profile's nats.jetstream_domain)")
	f.StringArrayVar(&o.spec.Admins, "admin", nil, "admin user: may write revocations and locks (repeatable)")
	f.StringArrayVar(&o.spec.Clients, "client", nil, "operator user: sends requests, reads only its own replies (repeatable)")
	f.StringArrayVar(&o.spec.Hosts, "host", nil, "host identity: answers requests, writes only its own registry entry and audit (repeatable)")
	f.StringArrayVar(&o.tlsNames, "tls-name", nil, "host name or IP address clients dial, for the server certificate (repeatable; default localhost, 127.0.0.1)")
	f.IntVar(&o.tlsDays, "tls-days", 365, "validity of the generated CA and server certificate, in days")
	f.BoolVar(&o.noTLS, "no-tls", false, "do not generate TLS files (bring your own: signet broker --tls-cert --tls-key)")
	f.StringArrayVar(&o.brokerURLs, "url", nil, "broker URL to write in the printed config snippets (default tls://127.0.0.1:4222)")
	return c
}

func brokerInitRun(_ context.Context, g *globalOptions, o *brokerInitOptions) error {
	if len(o.spec.Admins)+len(o.spec.Clients)+len(o.spec.Hosts) == 0 {
		return usageErrorf("name at least one user: --admin NAME, --client NAME or --host IDENTITY")
	}
	if o.tlsDays < 1 || o.tlsDays > 3650 {
		return usageErrorf("--tls-days %d: want 1 to 3650", o.tlsDays)
	}
	if err := o.envs(); err != nil {
		return err
	}
	users, err := broker.GenerateAuth(o.dir, o.spec)
	if err != nil {
		if errors.Is(err, broker.ErrAuth) {
			return usageErrorf("%v", err)
		}
		return err
	}
	var ca string
	if !o.noTLS {
		tf, err := broker.GenerateTLS(o.dir, o.tlsNames, time.Duration(o.tlsDays)*24*time.Hour)
		if err != nil {
			return err
		}
		ca = tf.CA
	}
	if err := initClusterAuth(g, o.dir, time.Duration(o.tlsDays)*24*time.Hour); err != nil {
		return err
	}
	urls := o.brokerURLs
	if len(urls) == 0 {
		urls = []string{"tls://127.0.0.1:4222"}
		if o.noTLS {
			urls = []string{"nats://127.0.0.1:4222"}
		}
	}
	abs := func(p string) string {
		if a, err := filepath.Abs(p); err == nil {
			return a
		}
		return p
	}
	fmt.Fprintf(g.io.Err, "wrote %s and %d nkey seeds in %s\n", broker.AuthConfigPath(o.dir), len(users), filepath.Join(o.dir, "users"))
	start := "--collective " + o.spec.Collective
	for _, e := range o.spec.Also {
		if e.Domain == "" {
			start += " --collective " + e.Collective
		}
	}
	fmt.Fprintf(g.io.Err, "start the broker with: signet broker --auth %s %s\n", o.dir, start)
	for _, e := range o.spec.Also {
		if e.Domain != "" {
			fmt.Fprintf(g.io.Err, "collective %s is reached over a leafnode in JetStream domain %s: its broker runs --domain %s with users of its own (signet broker init DIR --collective %s --host ...); profiles set nats.jetstream_domain: %s\n",
				e.Collective, e.Domain, e.Domain, e.Collective, e.Domain)
		}
	}
	fmt.Fprintln(g.io.Err, "give each user its seed; its config (signetd.yaml or client.yaml) says:")
	for _, u := range users {
		if u.Name == broker.BrokerUser {
			continue
		}
		var b strings.Builder
		fmt.Fprintf(&b, "# %s (%s)\nnats:\n  urls: [%s]\n  nkey_file: %s\n", u.Name, u.Role, strings.Join(urls, ", "), abs(broker.SeedPath(o.dir, u.Name)))
		if ca != "" {
			fmt.Fprintf(&b, "  ca_file: %s\n", abs(ca))
		}
		fmt.Fprint(g.io.Out, b.String())
	}
	return nil
}

// envs fills the spec's collectives from --collective and
// --jetstream-domain.
func (o *brokerInitOptions) envs() error {
	if len(o.collectives) == 0 {
		return usageErrorf("name a collective: --collective NAME")
	}
	domains := map[string]string{}
	for _, d := range o.domains {
		c, dom, ok := strings.Cut(d, "=")
		if !ok || c == "" || dom == "" {
			return usageErrorf("--jetstream-domain %q: want COLLECTIVE=DOMAIN, such as dr=dr", d)
		}
		if !slices.Contains(o.collectives, c) {
			return usageErrorf("--jetstream-domain %s: %s is not a --collective of this broker", d, c)
		}
		domains[c] = dom
	}
	if d := domains[o.collectives[0]]; d != "" {
		return usageErrorf("--jetstream-domain %s=%s: %s is this broker's own collective (the first --collective), whose hosts connect to it: its domain is the broker's own --domain", o.collectives[0], d, o.collectives[0])
	}
	o.spec.Collective = o.collectives[0]
	o.spec.Also = nil
	for _, c := range o.collectives[1:] {
		o.spec.Also = append(o.spec.Also, broker.Env{Collective: c, Domain: domains[c]})
	}
	if _, err := o.spec.Envs(); err != nil {
		return usageErrorf("%v", err)
	}
	return nil
}

type brokerProvisionOptions struct {
	registryTTL time.Duration
	lockTTL     time.Duration
}

// newBrokerProvisionCmd creates the buckets on a broker signet does not
// run (an existing NATS deployment with the permissions applied), as the
// admin user of the client config.
func newBrokerProvisionCmd(g *globalOptions) *cobra.Command {
	o := &brokerProvisionOptions{}
	c := &cobra.Command{
		Use:   "provision",
		Short: "Create the collective's buckets and audit stream on a locked-down broker, as an admin",
		Long: `provision connects with the client config (its nats: section must be an admin
user's) and creates, or brings up to date, the registry, control and workflow
buckets and the audit stream of the config's collective. On a broker with
signet's permissions hosts and operators may only open them. ` + "`signet broker --auth`" + `
does this itself at start; run it once for an existing nats-server.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return brokerProvisionRun(cmd.Context(), g, o)
		},
	}
	c.Flags().DurationVar(&o.registryTTL, "registry-ttl", 90*time.Second, "registry bucket TTL; must equal the hosts' registry_ttl")
	c.Flags().DurationVar(&o.lockTTL, "lock-ttl", 2*time.Minute, "deploy locks bucket TTL (the client's default)")
	return c
}

func brokerProvisionRun(ctx context.Context, g *globalOptions, o *brokerProvisionOptions) error {
	if o.registryTTL < time.Second || o.lockTTL < time.Second {
		return usageErrorf("--registry-ttl and --lock-ttl: want at least 1s")
	}
	cfg, err := loadClientConfig(g.config, g.env, g.io.Getenv)
	if err != nil {
		return err
	}
	opts, err := natsOptions(cfg, g.logger())
	if err != nil {
		return err
	}
	url := strings.Join(cfg.NATS.URLs, ",")
	nc, err := nats.Connect(url, append(opts, nats.MaxReconnects(0))...)
	if err != nil {
		return fmt.Errorf("connect to broker %s: %w", url, err)
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := provision.Buckets(ctx, nc, provision.Options{Collective: cfg.Collective, RegistryTTL: o.registryTTL, LockTTL: o.lockTTL}); err != nil {
		return withHint(err, "provision as a user with the admin role (signet broker init --admin NAME writes one)")
	}
	fmt.Fprintf(g.io.Err, "buckets and audit stream of collective %s are ready on %s\n", cfg.Collective, nc.ConnectedUrlRedacted())
	return nil
}
