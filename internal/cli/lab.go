package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/signetbus/signet/internal/lab"
	"github.com/signetbus/signet/internal/version"
	"github.com/signetbus/signet/plugins"
	_ "github.com/signetbus/signet/plugins/all" // the plugin whitelist, for signetd and the lab's hosts
)

type labOptions struct {
	hosts        int
	dir          string
	port         int
	pluginConfig string
	haproxy      string
	alertmanager string
	ca           bool
}

func newLabCmd(g *globalOptions) *cobra.Command {
	o := &labOptions{}
	c := &cobra.Command{
		Use:   "lab",
		Short: "Run a local fleet: an embedded broker and N signed responders",
		Long: `lab starts, in the foreground, an embedded NATS broker on a free loopback port and
N responders web1..webN (zone a/b/c by number, env=lab), each with its own host key,
facts and audit log, plus an operator key trusted with the admin role. It writes
DIR/client.yaml; point signet at it with SIGNET_CONFIG. Ctrl-C stops it.

With --ca the trust is by certificates, as a security team's SSH CA would run it:
the stock ssh-keygen makes DIR/ca/user_ca and DIR/ca/host_ca, certifies the
operator key (key ID operator, principal admin, 8 hours) and each host's key;
the hosts' authorized_keys is one cert-authority line and the client's
known_hosts one "@cert-authority *" line. Certificates are issued again at each start.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return labRun(cmd.Context(), g, o)
		},
	}
	f := c.Flags()
	f.IntVar(&o.hosts, "hosts", 3, "number of responders")
	f.StringVar(&o.dir, "dir", ".lab", "directory for keys, configs, audit logs and the broker store")
	f.IntVar(&o.port, "port", 0, "broker port (default: a free one)")
	f.StringVar(&o.pluginConfig, "plugin-config", "", "YAML file: plugins to enable on every host, with their settings (as in signetd's plugins:)")
	f.StringVar(&o.haproxy, "haproxy-socket", "", "enable the haproxy plugin on every host with this runtime API socket (unix:/path or tcp:host:port)")
	f.StringVar(&o.alertmanager, "alertmanager", "", "enable the maintenance plugin on every host with this Alertmanager URL")
	f.BoolVar(&o.ca, "ca", false, "certificate mode: ssh-keygen makes a user CA and a host CA in DIR/ca; the operator gets an 8-hour user certificate, each host a host certificate; hosts trust the user CA, the client known_hosts is one @cert-authority line")
	return c
}

// labPlugins returns the plugin configs lab hosts get: health always, plus
// what the flags and the plugin-config file add.
func (o *labOptions) labPlugins() (map[string]json.RawMessage, error) {
	cfgs := map[string]json.RawMessage{}
	if _, ok := plugins.Lookup("health"); ok {
		cfgs["health"] = nil
	}
	if o.haproxy != "" {
		b, _ := json.Marshal(map[string]any{"instances": []map[string]string{{"name": "main", "socket": o.haproxy}}})
		cfgs["haproxy"] = b
	}
	if o.alertmanager != "" {
		b, _ := json.Marshal(map[string]any{"backends": []map[string]any{{"alertmanager": map[string]any{"url": o.alertmanager}}}})
		cfgs["maintenance"] = b
	}
	if o.pluginConfig != "" {
		raw, err := os.ReadFile(o.pluginConfig)
		if err != nil {
			return nil, err
		}
		var m map[string]any
		if err := yaml.Unmarshal(raw, &m); err != nil {
			return nil, fmt.Errorf("%s: %w", o.pluginConfig, err)
		}
		for k, v := range m {
			b, err := json.Marshal(v)
			if err != nil {
				return nil, fmt.Errorf("%s: plugin %s: %w", o.pluginConfig, k, err)
			}
			cfgs[k] = b
		}
	}
	return cfgs, nil
}

func buildPlugins(cfgs map[string]json.RawMessage) (map[string]plugins.Plugin, error) {
	out := map[string]plugins.Plugin{}
	for name, raw := range cfgs {
		info, ok := plugins.Lookup(name)
		if !ok {
			return nil, fmt.Errorf("plugin %q is not in the whitelist (available: %s)", name, strings.Join(plugins.Names(), ", "))
		}
		if string(raw) == "null" {
			raw = nil
		}
		p, err := info.New(raw)
		if err != nil {
			return nil, fmt.Errorf("plugin %s: %w", name, err)
		}
		out[name] = p
	}
	return out, nil
}

func labRun(ctx context.Context, g *globalOptions, o *labOptions) error {
	if err := lab.CheckHosts(o.hosts); err != nil {
		return usageErrorf("--hosts: %v", err)
	}
	cfgs, err := o.labPlugins()
	if err != nil {
		return err
	}
	if _, err := buildPlugins(cfgs); err != nil { // fail before starting anything
		return err
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	l, err := lab.Start(ctx, lab.Options{Dir: o.dir, Hosts: o.hosts, Port: o.port, Version: version.Version,
		Plugins: func(*lab.HostInfo) (map[string]plugins.Plugin, error) { return buildPlugins(cfgs) },
		Logger:  g.logger(), CA: o.ca})
	if err != nil {
		return err
	}
	names := slices.Sorted(maps.Keys(cfgs))
	rel := l.ClientConfig
	if wd, err := os.Getwd(); err == nil {
		if r, err := filepath.Rel(wd, l.ClientConfig); err == nil && !strings.HasPrefix(r, "..") {
			rel = r
		}
	}
	// The commands name signet as the operator started it (see
	// selfCommand): an installed signet, or go run in the repository.
	exe, _ := os.Executable()
	wd, _ := os.Getwd()
	self := selfCommand(exe, wd, exec.LookPath)
	if o.ca {
		fmt.Fprintf(g.io.Err, `signet lab: certificate mode: user CA %[1]s/ca/user_ca.pub (hosts trust it: authorized_keys),
  host CA %[1]s/ca/host_ca.pub (the client trusts it: known_hosts), operator certificate %[1]s/operator_key-cert.pub
  (ssh-keygen -L -f %[1]s/operator_key-cert.pub shows it)
`, l.Dir)
	}
	fmt.Fprintf(g.io.Err, `signet lab: %d responders (web1..web%d, zones a/b/c) on broker %s
agents: rpcutil %s
audit logs: %s/hosts/*/audit.jsonl

In another terminal:
  export SIGNET_CONFIG=%s
  %[7]s ping
  %[7]s discover -F zone=b
  %[7]s facts os
  %[7]s rpc rpcutil inventory -I web2

Ctrl-C stops the lab.
`, o.hosts, o.hosts, l.Broker.ClientURL(), strings.Join(names, " "), l.Dir, rel, self)
	<-ctx.Done()
	fmt.Fprintln(g.io.Err, "signet lab: stopping")
	return l.Stop()
}
