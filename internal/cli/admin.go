package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/crypto/ssh"

	"github.com/signetbus/signet/bus"
	"github.com/signetbus/signet/internal/broker"
	"github.com/signetbus/signet/internal/keys"
	"github.com/signetbus/signet/plugins"
)

type keygenOptions struct {
	path           string
	comment        string
	passphraseFile string
}

func newKeygenCmd(g *globalOptions) *cobra.Command {
	o := &keygenOptions{}
	c := &cobra.Command{
		Use:   "keygen",
		Short: "Make an ed25519 signing key (OpenSSH format)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return keygenRun(cmd.Context(), g, o)
		},
	}
	c.Flags().StringVarP(&o.path, "file", "f", "", "where to write the key (default ~/.config/signet/id_ed25519)")
	c.Flags().StringVarP(&o.comment, "comment", "C", "", "key comment (default USER@HOST)")
	c.Flags().StringVar(&o.passphraseFile, "passphrase-file", "", "encrypt the key with the passphrase in this file")
	return c
}

func keygenRun(_ context.Context, g *globalOptions, o *keygenOptions) error {
	dflt := o.path == ""
	if dflt {
		home, err := os.UserHomeDir()
		if err != nil {
			return err
		}
		o.path = filepath.Join(home, DefaultKeyPath)
	}
	if o.comment == "" {
		h, _ := os.Hostname()
		o.comment = g.io.Getenv("USER") + "@" + h
	}
	var pass []byte
	if o.passphraseFile != "" {
		b, err := os.ReadFile(o.passphraseFile)
		if err != nil {
			return err
		}
		pass = []byte(strings.TrimRight(string(b), "\r\n"))
	}
	if err := os.MkdirAll(filepath.Dir(o.path), 0o700); err != nil {
		return err
	}
	pub, err := keys.Generate(o.path, o.comment, pass)
	if err != nil {
		return err
	}
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub)))
	fmt.Fprintf(g.io.Out, "%s\n", keys.Fingerprint(pub))
	fmt.Fprintf(g.io.Err, "wrote %s and %s.pub\n", o.path, o.path)
	if dflt {
		fmt.Fprintf(g.io.Err, "signet signs with this key by default\n")
	} else {
		fmt.Fprintf(g.io.Err, "to sign with it, set in the client config: key: %s (or SIGNET_KEY=%s)\n", o.path, o.path)
	}
	fmt.Fprintf(g.io.Err, "to trust it on hosts, add this line to their authorized_keys (choose the roles):\n  roles=\"admin\" %s %s\n", line, o.comment)
	return nil
}

type brokerOptions struct {
	listen  string
	port    int
	store   string
	name    string
	topo    broker.Topology
	debug   bool
	lock    brokerAuthOptions
	monitor brokerMonitorOptions
}

func newBrokerCmd(g *globalOptions) *cobra.Command {
	o := &brokerOptions{}
	c := &cobra.Command{
		Use:   "broker",
		Short: "Run an embedded NATS broker with JetStream (single node or cluster node)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return brokerRun(cmd.Context(), g, o)
		},
	}
	f := c.Flags()
	f.StringVar(&o.listen, "listen", "127.0.0.1", "client listen address")
	f.IntVar(&o.port, "port", 4222, "client port")
	f.StringVar(&o.store, "store", "", "JetStream store directory (default ./signet-broker)")
	f.StringVar(&o.name, "name", "", "server name (required and unique per node in a cluster)")
	addTopologyFlags(f, &o.topo)
	f.BoolVar(&o.debug, "debug", false, "log the server's own messages")
	addBrokerAuthFlags(f, &o.lock)
	addBrokerMonitorFlags(f, &o.monitor)
	c.AddCommand(newBrokerInitCmd(g), newBrokerProvisionCmd(g))
	return c
}

func brokerRun(ctx context.Context, g *globalOptions, o *brokerOptions) error {
	if o.store == "" {
		o.store = "signet-broker"
	}
	if err := checkTopology(o.name, o.topo); err != nil {
		return err
	}
	if err := topologyAuth(o.lock.auth, &o.topo); err != nil {
		return err
	}
	if err := o.monitor.check(); err != nil {
		return err
	}
	cfg := broker.Config{Host: o.listen, Port: o.port, StoreDir: o.store, Name: o.name,
		Topology: o.topo, Debug: o.debug, MonitorListen: o.monitor.listen}
	if err := o.lock.apply(&cfg); err != nil {
		return err
	}
	provision := deferProvision(g, &cfg)
	s, err := broker.Start(cfg)
	if err != nil {
		return err
	}
	stopMetrics, err := o.monitor.startMetrics(g, s)
	if err != nil {
		s.Shutdown()
		return err
	}
	defer stopMetrics()
	if w := o.lock.warning(); w != "" {
		fmt.Fprintln(g.io.Err, w)
	}
	if w := clusterWarning(s); w != "" {
		fmt.Fprintln(g.io.Err, w)
	}
	fmt.Fprintf(g.io.Err, "broker listening on %s (JetStream store %s%s); Ctrl-C stops it\n", s.ClientURL(), o.store, o.monitor.describe())
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if provision != nil {
		go provision(ctx, s)
	}
	<-ctx.Done()
	s.Shutdown()
	s.WaitForShutdown()
	return nil
}

func newPluginsCmd(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "plugins",
		Short: "List the agents the fleet offers, and on how many hosts",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := g.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer s.Close()
			count := map[string][]string{}
			if reg := s.registry(cmd.Context()); reg != nil {
				regs, err := reg.List(cmd.Context())
				if err != nil {
					return err
				}
				for _, r := range regs {
					for _, a := range r.Agents {
						count[a] = append(count[a], r.Identity)
					}
				}
			} else {
				q := bus.Query{Agent: "rpcutil", Action: "inventory", Timeout: s.cfg.Timeout.D(), DiscoveryTimeout: s.cfg.DiscoveryTimeout.D()}
				o, err := s.client.Do(cmd.Context(), q)
				if err != nil {
					return err
				}
				for _, r := range o.Results {
					if r.Status != bus.ResultOK {
						continue
					}
					inv, err := bus.ParseInventory(r.Reply.Data)
					if err != nil {
						return fmt.Errorf("%s: %w", r.Identity, err)
					}
					for _, n := range inv.AgentNames() {
						count[n] = append(count[n], r.Identity)
					}
				}
			}
			names := slices.Sorted(maps.Keys(count))
			p := g.printer()
			if p.json {
				return p.jsonValue(count)
			}
			rows := [][]string{}
			for _, n := range names {
				rows = append(rows, []string{n, fmt.Sprint(len(count[n]))})
			}
			p.table([]string{"AGENT", "HOSTS"}, rows)
			return nil
		},
	}
}

func newDescribeCmd(g *globalOptions) *cobra.Command {
	q := &queryFlags{}
	c := &cobra.Command{
		Use:   "describe AGENT",
		Short: "Show an agent's actions and inputs, as a host that has it declares them",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			q.agent = append(q.agent, args[0])
			if q.limit == 0 {
				q.limit = 1
			}
			o, err := g.run(cmd.Context(), q, "rpcutil", "ddl", map[string]any{"agent": args[0]})
			if err != nil {
				return err
			}
			for _, r := range o.Results {
				if r.Status != bus.ResultOK {
					continue
				}
				raw, _ := json.Marshal(r.Reply.Data["ddl"])
				var d plugins.DDL
				if err := json.Unmarshal(raw, &d); err != nil {
					return fmt.Errorf("%s sent an unreadable declaration: %w", r.Identity, err)
				}
				if g.json {
					return g.printer().jsonValue(d)
				}
				printDDL(g, &d, r.Identity)
				return nil
			}
			summary(g.io.Err, o)
			return errors.New("no host answered with the declaration")
		},
	}
	q.register(c)
	return c
}

func printDDL(g *globalOptions, d *plugins.DDL, from string) {
	w := g.io.Out
	fmt.Fprintf(w, "%s: %s\n(declared by %s)\n", d.Name, d.Description, from)
	for _, a := range d.Actions {
		fmt.Fprintf(w, "\n  %s: %s\n", a.Name, a.Description)
		for _, in := range a.Inputs {
			req := "optional"
			if in.Required {
				req = "required"
			}
			rule := ""
			switch {
			case len(in.Enum) > 0:
				rule = " one of " + strings.Join(in.Enum, "|")
			case in.Pattern != "":
				rule = " matching " + in.Pattern
			}
			def := ""
			if in.Default != nil {
				def = fmt.Sprintf(" (default %v)", in.Default)
			}
			fmt.Fprintf(w, "    %-14s %s, %s%s%s: %s\n", in.Name, in.Type, req, rule, def, in.Description)
		}
		for _, out := range a.Outputs {
			fmt.Fprintf(w, "    => %-11s %s\n", out.Name, out.Description)
		}
	}
}
