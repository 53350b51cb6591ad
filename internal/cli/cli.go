// Package cli holds the signet and signetd commands. cmd/signet and
// cmd/signetd only call Main and DaemonMain, so tests run the real
// commands in-process.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"
	"golang.org/x/crypto/ssh"

	"github.com/signetbus/signet/bus"
	"github.com/signetbus/signet/internal/keys"
	"github.com/signetbus/signet/internal/redact"
	"github.com/signetbus/signet/internal/version"
)

// IO is where a command reads and writes.
type IO struct {
	In     io.Reader
	Out    io.Writer
	Err    io.Writer
	Getenv func(string) string
	// IsTerminal reports whether Out is a terminal (tables and colour).
	IsTerminal bool
}

// Main runs signet with args and returns the exit code. It is the one place
// where errors become exit codes. It builds only the command args name (see
// commandFor): every run pays for its command tree before it does anything.
func Main(ctx context.Context, args []string, stdio IO) int {
	if stdio.Getenv == nil {
		stdio.Getenv = os.Getenv
	}
	root := newRootCmd(&stdio, func(root *cobra.Command) int { return commandFor(root, args) })
	root.SetArgs(args)
	root.SetIn(stdio.In)
	root.SetOut(stdio.Out)
	root.SetErr(stdio.Err)
	err := root.ExecuteContext(ctx)
	return exitCode(err, stdio.Err, "signet")
}

// Command is signet's whole command tree, for the packaging command that
// generates man pages and shell completions from it.
func Command(stdio IO) *cobra.Command {
	if stdio.Getenv == nil {
		stdio.Getenv = os.Getenv
	}
	return newRootCmd(&stdio, func(*cobra.Command) int { return allCommands })
}

// globalOptions are the flags every client command shares.
type globalOptions struct {
	config string
	env    string
	json   bool
	io     *IO
}

// commandList is signet's commands, in the order help lists them: the one
// place a command is registered. name and aliases are the command's own, so
// that Main can build only the command a run names
// (TestCommandListNamesItsCommands).
var commandList = []struct {
	name    string
	aliases []string
	build   func(*globalOptions) *cobra.Command
}{
	{"keygen", nil, newKeygenCmd},
	{"broker", nil, newBrokerCmd},
	{"ping", nil, newPingCmd},
	{"discover", []string{"find"}, newDiscoverCmd},
	{"facts", nil, newFactsCmd},
	{"inventory", nil, newInventoryCmd},
	{"rpc", nil, newRPCCmd},
	{"plugins", nil, newPluginsCmd},
	{"describe", nil, newDescribeCmd},
	{"lab", nil, newLabCmd},
	{"deploy", nil, newDeployCmd},
	{"workflow", nil, newWorkflowCmd},
	{"release", nil, newReleaseCmd},
	{"demo", nil, newDemoCmd},
	{"audit", nil, newAuditCmd},
	{"revoke", nil, newRevokeCmd},
	{"lock", nil, newLockCmd},
	{"unlock", nil, newUnlockCmd},
	{"approve", nil, newApproveCmd},
	{"approvals", nil, newApprovalsCmd},
	{"status", nil, newStatusCmd},
}

// Which commands newRootCmd builds: one index into commandList, or one of these.
const (
	allCommands = -1 // help, completion, an unknown command: the whole tree
	noCommand   = -2 // --version: the root alone
)

// commandFor picks what the run named by args needs: the command named by
// the first argument that is not a flag, the root alone for a bare
// --version, and the whole tree for anything else (help, completion, an
// unknown or misspelt command, so that its suggestions come from every
// command). The root's persistent flags that take a value (--config,
// --env) are skipped with their value, as root's flag set says.
func commandFor(root *cobra.Command, args []string) int {
	pf := root.PersistentFlags()
	takesValue := func(a string) bool { // a flag without "=value"
		f := pf.Lookup(strings.TrimPrefix(a, "--"))
		if !strings.HasPrefix(a, "--") {
			f = pf.ShorthandLookup(strings.TrimPrefix(a, "-"))
		}
		return f != nil && f.NoOptDefVal == ""
	}
	version := false
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			return allCommands
		case a == "-h" || a == "--help":
			return allCommands
		case a == "-v" || a == "--version":
			version = true
		case strings.HasPrefix(a, "-"):
			if !strings.Contains(a, "=") && len(a) > 1 && (strings.HasPrefix(a, "--") || len(a) == 2) && takesValue(a) {
				i++ // the flag's value
			}
		default:
			for n, e := range commandList {
				if a == e.name || slices.Contains(e.aliases, a) {
					return n
				}
			}
			return allCommands
		}
	}
	if version {
		return noCommand
	}
	return allCommands
}

// newRootCmd builds the root command with the commands that which picks,
// given the root and its flags.
func newRootCmd(stdio *IO, pick func(root *cobra.Command) int) *cobra.Command {
	g := &globalOptions{io: stdio}
	root := &cobra.Command{
		Use:   "signet",
		Short: "Signed commands for your fleet",
		Long: `signet signs allow-listed actions with your ed25519 key and sends them over NATS
to signetd on every host, which verifies, authorizes, runs, signs its reply and audits.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version.Version,
	}
	root.SetVersionTemplate(version.String("signet") + "\n")
	pf := root.PersistentFlags()
	pf.StringVar(&g.config, "config", "", "client config file (default $SIGNET_CONFIG or ~/.config/signet/client.yaml)")
	pf.StringVar(&g.env, "env", "", "environment profile from the config (dev, dr, prod...); default $SIGNET_ENV")
	pf.BoolVarP(&g.json, "json", "j", false, "print machine-readable JSON")
	switch which := pick(root); which {
	case allCommands:
		for _, e := range commandList {
			root.AddCommand(e.build(g))
		}
	case noCommand:
	default:
		// One command: cobra's help and completion commands are not
		// needed, as the run names another.
		root.CompletionOptions.DisableDefaultCmd = true
		root.SetHelpCommand(&cobra.Command{Hidden: true})
		root.AddCommand(commandList[which].build(g))
	}
	markUsage(root)
	return root
}

// session is a connected, configured client.
type session struct {
	cfg    *ClientConfig
	nc     *nats.Conn
	client *bus.Client
	reg    *bus.Registry // opened on first use: see registry
	signer ssh.Signer
}

// registry opens the fleet registry and returns it, or nil when the broker
// has none (or it cannot be opened: logged), for commands that do without
// one.
func (s *session) registry(ctx context.Context) *bus.Registry {
	if s.reg.Open(ctx) != nil {
		return nil
	}
	return s.reg
}

func (s *session) Close() {
	if s.nc != nil {
		s.nc.Close()
	}
}

func (g *globalOptions) logger() *slog.Logger {
	lvl := slog.LevelWarn
	if g.io.Getenv("SIGNET_DEBUG") != "" {
		lvl = slog.LevelDebug
	}
	return slog.New(redact.NewHandler(slog.NewTextHandler(g.io.Err, &slog.HandlerOptions{Level: lvl}), nil))
}

// connect loads the config, the signing key and known hosts, and dials the broker.
func (g *globalOptions) connect(ctx context.Context) (*session, error) {
	cfg, err := loadClientConfig(g.config, g.env, g.io.Getenv)
	if err != nil {
		return nil, err
	}
	signer, err := g.signer(cfg)
	if err != nil {
		return nil, err
	}
	known, err := keys.LoadKnownHosts(cfg.KnownHosts)
	if err != nil {
		return nil, withHint(err, "the lab writes known_hosts for you; for real hosts add a line per host: IDENTITY ssh-ed25519 AAAA... (signetd --print-host-key prints it)")
	}
	opts, err := natsOptions(cfg, g.logger())
	if err != nil {
		return nil, err
	}
	nc, err := nats.Connect(strings.Join(cfg.NATS.URLs, ","), opts...)
	if err != nil {
		return nil, withHint(fmt.Errorf("connect to broker %s: %w", strings.Join(cfg.NATS.URLs, ","), err),
			"is the broker running? start one with `signet broker` or a whole fleet with `signet lab`")
	}
	s := &session{cfg: cfg, nc: nc, signer: signer}
	js, err := cfg.NATS.JetStream(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	// Opened on first use: most commands never list it, and a request to
	// named hosts reads only their entries (bus.LazyRegistry).
	s.reg = bus.LazyRegistry(js, cfg.Collective, g.logger())
	s.client, err = bus.NewClient(bus.ClientConfig{Conn: nc, Collective: cfg.Collective, Signer: signer, User: cfg.User,
		HostKeys: known, Registry: s.reg, Logger: g.logger(), Protocol: cfg.Protocol})
	if err != nil {
		nc.Close()
		return nil, err
	}
	return s, nil
}

// natsOptions are the client's connection options. The client reconnects
// every second with jitter for as long as the command runs (every command
// is bounded by its own timeouts), so a deploy rides through a broker
// restart; it says on stderr when the broker goes away and comes back.
func natsOptions(cfg *ClientConfig, log *slog.Logger) ([]nats.Option, error) {
	auth, err := cfg.NATS.AuthOptions()
	if err != nil {
		return nil, err
	}
	return append([]nats.Option{nats.Name("signet " + cfg.User), nats.Timeout(5 * time.Second),
		nats.MaxReconnects(-1), nats.ReconnectWait(time.Second), nats.ReconnectJitter(250*time.Millisecond, time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("lost the broker connection; reconnecting", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { log.Warn("reconnected to the broker", "url", nc.ConnectedUrlRedacted()) }),
	}, auth...), nil
}

// signer loads the operator's key from a file or from ssh-agent.
func (g *globalOptions) signer(cfg *ClientConfig) (ssh.Signer, error) {
	if cfg.Key == "agent" {
		sock := g.io.Getenv("SSH_AUTH_SOCK")
		if sock == "" {
			return nil, withHint(errors.New("key is \"agent\" but SSH_AUTH_SOCK is not set"), "start ssh-agent and ssh-add your ed25519 key, or set key: to a key file")
		}
		conn, err := net.Dial("unix", sock)
		if err != nil {
			return nil, fmt.Errorf("ssh-agent: %w", err)
		}
		s, err := keys.AgentSigner(conn, cfg.AgentKey)
		if err != nil {
			return nil, err
		}
		return checkCertificate(s, time.Now())
	}
	if cfg.keyNote != "" {
		fmt.Fprintf(g.io.Err, "signet: %s\n", cfg.keyNote)
	}
	s, err := g.loadKeyFile(cfg.Key)
	if err != nil {
		return nil, err
	}
	if s, err = keys.WithCertificate(s, cfg.Key); err != nil {
		return nil, err
	}
	return checkCertificate(s, time.Now())
}
