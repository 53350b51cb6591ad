// Package signetd is the signetd command: flags, config, --check and the
// pid file, then agents.Run. cmd/signetd only calls Main, so tests run the
// real command in-process.
//
// It imports only what the daemon needs: no client, workflow, lab or demo
// code is linked into the signetd binary (see cmd/signetd's tests).
package signetd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/signetbus/signet/agents"
	"github.com/signetbus/signet/internal/keys"
	"github.com/signetbus/signet/internal/metrics"
	"github.com/signetbus/signet/internal/version"
	_ "github.com/signetbus/signet/plugins/all" // the plugin whitelist
)

type daemonOptions struct {
	config       string
	identity     string
	natsURL      string
	logLevel     string
	logFormat    string
	printHostKey bool
	checkConfig  bool
	pidFile      string
}

// Exit codes.
const (
	ExitOK     = 0 // signetd stopped cleanly, or --check found no problem
	ExitFailed = 1 // signetd could not start or failed
	ExitUsage  = 2 // the command line or the config is wrong
)

// IO is where signetd reads its environment and writes.
type IO struct {
	Out    io.Writer
	Err    io.Writer
	Getenv func(string) string
	// Metrics serves metrics_listen: cmd/signetd passes the Prometheus
	// exporter (metrics/prom), which only that binary links. Nil refuses a
	// config that sets metrics_listen.
	Metrics metrics.Exporter
}

// StdIO returns the process's standard streams and environment.
func StdIO() IO { return IO{Out: os.Stdout, Err: os.Stderr, Getenv: os.Getenv} }

// usageError is a mistake in the command line or the config.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

// Main runs signetd with args and returns the exit code. It is the one
// place where signetd's errors become exit codes.
func Main(ctx context.Context, args []string, stdio IO) int {
	c := Command(stdio)
	c.SetArgs(args)
	return exitCode(c.ExecuteContext(ctx), stdio.Err)
}

// Command is signetd's command, for Main and for the packaging command
// that generates its man page and shell completions.
func Command(stdio IO) *cobra.Command {
	if stdio.Getenv == nil {
		stdio.Getenv = os.Getenv
	}
	o := &daemonOptions{}
	c := &cobra.Command{
		Use:   "signetd",
		Short: "signet's host responder: verifies signed requests and runs whitelisted plugins",
		Args: func(c *cobra.Command, a []string) error {
			if err := cobra.NoArgs(c, a); err != nil {
				return &usageError{err.Error()}
			}
			return nil
		},
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version.Version,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return daemonRun(cmd.Context(), &stdio, o)
		},
	}
	c.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return &usageError{err.Error()} })
	f := c.Flags()
	f.StringVarP(&o.config, "config", "c", "", "config file (default $SIGNETD_CONFIG or /etc/signet/signetd.yaml)")
	f.StringVar(&o.identity, "identity", "", "override the identity")
	f.StringVar(&o.natsURL, "nats", "", "override the broker URLs (comma-separated)")
	f.StringVar(&o.logLevel, "log-level", "", "debug, info, warn or error")
	f.StringVar(&o.logFormat, "log-format", "", "json, text or auto")
	f.BoolVar(&o.printHostKey, "print-host-key", false, "print this host's known_hosts line for clients and exit (creates the key if missing)")
	f.StringVar(&o.pidFile, "pid-file", "", "write the process id to this file (for kill -HUP to reload)")
	f.BoolVar(&o.checkConfig, "check", false, "load the config, keys, policy and plugins, report problems and exit")
	c.SetVersionTemplate(version.String("signetd") + "\n")
	c.SetOut(stdio.Out)
	c.SetErr(stdio.Err)
	return c
}

func exitCode(err error, stderr io.Writer) int {
	if err == nil {
		return ExitOK
	}
	fmt.Fprintf(stderr, "signetd: %v\n", err)
	var ue *usageError
	if errors.As(err, &ue) || errors.Is(err, agents.ErrConfig) {
		return ExitUsage
	}
	return ExitFailed
}

func daemonRun(ctx context.Context, stdio *IO, o *daemonOptions) error {
	path := o.config
	if path == "" {
		path = stdio.Getenv("SIGNETD_CONFIG")
	}
	if path == "" {
		if _, err := os.Stat("/etc/signet/signetd.yaml"); err == nil {
			path = "/etc/signet/signetd.yaml"
		}
	}
	cfg, err := agents.LoadConfig(path)
	if err != nil {
		return &usageError{err.Error()}
	}
	if o.identity != "" {
		cfg.Identity = o.identity
	}
	if o.natsURL != "" {
		cfg.NATS.URLs = strings.Split(o.natsURL, ",")
	}
	if o.logLevel != "" {
		cfg.Log.Level = o.logLevel
	}
	if o.logFormat != "" {
		cfg.Log.Format = o.logFormat
	}
	// One validation for start-up and --check: a config --check accepts
	// is one start-up accepts, and the other way round.
	if err := cfg.Validate(); err != nil {
		return &usageError{err.Error()}
	}
	if o.printHostKey {
		hk, err := keys.LoadHostKey(cfg.HostKey)
		if err != nil {
			return err
		}
		// FormatKnownHost ends the line itself: no blank line for
		// `>> known_hosts` to collect.
		fmt.Fprint(stdio.Out, keys.FormatKnownHost(cfg.Identity, hk.PublicKey()))
		return nil
	}
	log, err := daemonLogger(stdio, cfg.Log)
	if err != nil {
		return &usageError{err.Error()}
	}
	if o.checkConfig {
		// agents.Check is the first half of agents.Run, without its side
		// effects (no host key, directory or audit log is created).
		host, err := agents.Check(cfg, version.Version)
		if err != nil {
			return err
		}
		defer host.Close()
		fmt.Fprintf(stdio.Out, "config ok: identity %s, collective %s, %d plugins\n", cfg.Identity, cfg.Collective, len(host.Node().Agents)-1)
		return nil
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if o.pidFile != "" {
		remove, err := writePIDFile(o.pidFile, os.Getpid())
		if err != nil {
			return err
		}
		defer remove()
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	reload := make(chan struct{}, 1)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				log.Info("SIGHUP: reloading trust and policy")
				select {
				case reload <- struct{}{}:
				default:
				}
			}
		}
	}()
	return agents.Run(ctx, cfg, agents.RunOptions{Version: version.Version, Logger: log, Reload: reload, Metrics: stdio.Metrics})
}

func daemonLogger(stdio *IO, c agents.LogConfig) (*slog.Logger, error) {
	var lvl slog.Level
	if c.Level != "" {
		if err := lvl.UnmarshalText([]byte(c.Level)); err != nil {
			return nil, fmt.Errorf("log level %q: want debug, info, warn or error", c.Level)
		}
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch c.Format {
	case "json":
		return slog.New(slog.NewJSONHandler(stdio.Err, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(stdio.Err, opts)), nil
	case "", "auto":
		if f, ok := stdio.Err.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			return slog.New(slog.NewTextHandler(stdio.Err, opts)), nil
		}
		return slog.New(slog.NewJSONHandler(stdio.Err, opts)), nil
	}
	return nil, fmt.Errorf("log format %q: want json, text or auto", c.Format)
}
