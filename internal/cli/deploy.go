package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/signetbus/signet/bus"
	"github.com/signetbus/signet/workflows"
	"github.com/signetbus/signet/workflows/buscaller"
	"github.com/signetbus/signet/workflows/deploy"
)

type runFlags struct {
	yes     bool
	plan    bool
	output  string
	logFile string
	resume  string
}

func (r *runFlags) register(c *cobra.Command) {
	f := c.Flags()
	f.BoolVarP(&r.yes, "yes", "y", false, "do not ask for confirmation (Jenkins, scripts)")
	f.BoolVar(&r.plan, "plan", false, "print every batch, host and step, and run nothing")
	f.StringVarP(&r.output, "output", "o", "text", "progress format: text or json (one event per line)")
	f.StringVar(&r.logFile, "log-file", "", "write the complete run log here (default RUNS/NAME-TIME.jsonl)")
	f.StringVar(&r.resume, "resume", "", "continue the run with this id from where it stopped")
}

// check validates the flags. The global --json means --output json, so
// one flag gives JSON from every command.
func (r *runFlags) check(g *globalOptions) error {
	if r.output != "text" && r.output != "json" {
		return usageErrorf("--output must be text or json, not %q", r.output)
	}
	if g.json {
		r.output = "json"
	}
	return nil
}

// runName names a run log after the app or workflow, whether it was
// given by name or as a path to its file.
func runName(arg string) string {
	base := filepath.Base(arg)
	if ext := filepath.Ext(base); ext == ".yaml" || ext == ".yml" {
		base = strings.TrimSuffix(base, ext)
	}
	return base
}

// workflowSession is what deploy, workflow and release need on top of a
// client session: a signed caller, the run store and interrupt handling.
type workflowSession struct {
	*session
	caller *buscaller.Caller
	store  workflows.Store
}

func (g *globalOptions) workflowSession(ctx context.Context) (*workflowSession, error) {
	s, err := g.connect(ctx)
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(s.nc)
	if err != nil {
		s.Close()
		return nil, err
	}
	if s.reg == nil {
		// Workflows need JetStream, and every signetd keeps its entry in
		// the registry there: no registry means the broker lost its state
		// (or no host has connected yet), not a fleet to discover by
		// whoever answers a broadcast in time.
		s.Close()
		return nil, withHint(errors.New("the broker has no fleet registry: its state was probably lost, or no signetd has connected to it yet"),
			"hosts create the registry and register within seconds of reconnecting: wait and retry, and check the fleet with `signet ping`")
	}
	resumeKeys, err := s.cfg.resumeKeys()
	if err != nil {
		s.Close()
		return nil, err
	}
	store, err := workflows.NewKVStore(ctx, js, workflows.KVConfig{Signer: bus.KeySigner(s.signer), ResumeKeys: resumeKeys, Log: g.logger()})
	if err != nil {
		s.Close()
		return nil, withHint(err, "workflows keep their state and locks in JetStream: the broker needs JetStream enabled")
	}
	return &workflowSession{session: s, caller: &buscaller.Caller{Client: s.client, Registry: s.reg}, store: store}, nil
}

// interrupts turns the first Ctrl-C into a soft stop (finish the current
// host, then stop) and the second into a hard cancel.
func interrupts(ctx context.Context, stderr io.Writer) (context.Context, <-chan struct{}, func()) {
	ctx, cancel := context.WithCancel(ctx)
	soft := make(chan struct{})
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		select {
		case <-sig:
			fmt.Fprintln(stderr, "\ninterrupt: finishing the hosts in progress, then stopping (Ctrl-C again stops at once)")
			close(soft)
		case <-ctx.Done():
			return
		}
		select {
		case <-sig:
			fmt.Fprintln(stderr, "\ninterrupt: stopping now")
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, soft, func() { signal.Stop(sig); cancel() }
}

func (g *globalOptions) confirm(what string) (bool, error) {
	f, ok := g.io.In.(*os.File)
	if !ok || !isTerminal(f) {
		return false, usageErrorf("%s needs confirmation: pass --yes when there is no terminal to ask on", what)
	}
	fmt.Fprintf(g.io.Err, "Type yes to %s: ", what)
	var answer string
	fmt.Fscanln(g.io.In, &answer)
	return strings.TrimSpace(answer) == "yes", nil
}

func logPath(cfg *ClientConfig, flag, name string) (string, error) {
	if flag != "" {
		return flag, nil
	}
	if err := os.MkdirAll(cfg.Runs, 0o700); err != nil {
		return "", fmt.Errorf("run log directory: %w", err)
	}
	return filepath.Join(cfg.Runs, fmt.Sprintf("%s-%s.jsonl", name, time.Now().UTC().Format("20060102T150405Z"))), nil
}

// appFile finds APP: a path to a file, or NAME.yaml in the apps directory.
// Not finding it is a usage error (exit 2).
func appFile(cfg *ClientConfig, app string) (string, error) {
	if st, err := os.Stat(app); err == nil && !st.IsDir() {
		return app, nil
	}
	for _, ext := range []string{".yaml", ".yml"} {
		p := filepath.Join(cfg.Apps, app+ext)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", withHint(usageErrorf("no app file for %q in %s", app, cfg.Apps), "pass a path to the app file, or set apps: in the client config")
}

// workflowExit maps a run's error to the command's result, printing the
// hosts left out of rotation.
func (g *globalOptions) workflowExit(err error) error {
	if err == nil {
		return nil
	}
	var ie *workflows.InterruptedError
	if errors.As(err, &ie) {
		return withHint(err, "resume with --resume and the run id above, or put the listed hosts back by hand")
	}
	var le *workflows.LockError
	if errors.As(err, &le) {
		return withHint(err, "wait for that run to finish, or resume it")
	}
	if errors.Is(err, workflows.ErrStopped) {
		return withHint(err, "continue with --resume and the run id above")
	}
	var rl *bus.RegistryLostError
	if errors.As(err, &rl) {
		return withHint(err, fmt.Sprintf("hosts register again within seconds of reconnecting: wait %s and retry, and check the fleet with `signet ping`", (rl.Refresh-rl.Age).Round(time.Second)))
	}
	var mh *workflows.MissingHostsError
	if errors.As(err, &mh) {
		return withHint(err, "start the missing hosts' signetd (check with `signet ping -I HOST`), or deploy without them with --allow-missing")
	}
	var lost *workflows.LockLostError
	if errors.As(err, &lost) {
		return withHint(err, "another run may hold the lock now: check who does before you resume this run")
	}
	var se *workflows.SaveError
	if errors.As(err, &se) {
		return withHint(err, "the broker did not take the run's last state: check the hosts named in the recap before resuming or deploying again")
	}
	var oe *workflows.OutputError
	if errors.As(err, &oe) {
		return withHint(err, "free the disk or fix the pipe the progress goes to, then resume with the run id above")
	}
	switch {
	case errors.Is(err, workflows.ErrStateSignature), errors.Is(err, workflows.ErrStateUnsigned):
		return withHint(err, "someone with access to the broker may have changed the run's record: do not resume it; start a new deploy")
	case errors.Is(err, workflows.ErrStateSigner):
		return withHint(err, "the run was started with another key: add the signer's key to resume_keys in your client config if you trust it")
	}
	return err
}

type deployOptions struct {
	runFlags
	policy policyFlags
	fleet  fleetFlags
}

// fleetFlags say which hosts a deploy expects (docs/workflows.md,
// "Knowing the fleet").
type fleetFlags struct {
	inventory    string
	allowMissing bool
}

func (f *fleetFlags) register(c *cobra.Command) {
	c.Flags().StringVar(&f.inventory, "inventory", "", "file naming the hosts the deploy expects, one per line (default: the app's hosts in the registry)")
	c.Flags().BoolVar(&f.allowMissing, "allow-missing", false, "start even though expected hosts do not answer the preflight ping; they are left out and recorded")
}

// policyFlags override the app file's capacity and failure policy
// (docs/workflows.md, "Capacity and failure policy").
type policyFlags struct {
	maxUnavailable, maxUnavailablePerZone, maxFailures, onFailure string
	strategy                                                      string
}

func (p *policyFlags) register(c *cobra.Command) {
	f := c.Flags()
	f.StringVar(&p.maxUnavailable, "max-unavailable", "", "most hosts out of rotation at once, failed hosts included: N or N% (default: the app file's, else the batch size)")
	f.StringVar(&p.maxUnavailablePerZone, "max-unavailable-per-zone", "", "most hosts out of rotation at once per zone: N or N%")
	f.StringVar(&p.maxFailures, "max-failures", "", "hosts that may fail before the run stops starting hosts: N or N% (default 0)")
	f.StringVar(&p.onFailure, "on-failure", "", "hold, rollback or stop_now (stop the hosts in progress too)")
	f.StringVar(&p.strategy, "strategy", "", "batches (lock-step) or window (the next host starts as soon as one finishes, within the caps)")
}

func (p *policyFlags) policy() deploy.Policy {
	return deploy.Policy{MaxUnavailable: p.maxUnavailable, MaxUnavailablePerZone: p.maxUnavailablePerZone, MaxFailures: p.maxFailures, OnFailure: p.onFailure, Strategy: p.strategy}
}

func newDeployCmd(g *globalOptions) *cobra.Command {
	o := &deployOptions{}
	c := &cobra.Command{
		Use:   "deploy APP VERSION",
		Short: "Roll VERSION of APP out across its hosts, batch by batch",
		Long: `deploy rolls an app out batch by batch: per host, maintenance on, drain from every
HAProxy, stop, update the package, check the version, start, health check, enable,
maintenance off. The first failure stops the run. Before touching a host it pings
every expected host (the app's hosts in the registry, or --inventory) and refuses to
start with any missing unless --allow-missing. --strategy window starts the next
host as soon as one finishes, within the caps. See docs/workflows.md.`,
		Example: `  signet deploy middleware 1.4.2 --env prod --plan
  signet deploy middleware 1.4.2 --env dev --yes --output json     # Jenkins
  signet deploy middleware 1.4.2 --env prod --inventory prod-middleware.hosts --plan
  signet deploy middleware 1.4.2 --env prod --yes --strategy window --allow-missing
  signet deploy --resume 7f3a9c`,
		Args: func(c *cobra.Command, args []string) error {
			if o.resume != "" {
				return cobra.MaximumNArgs(2)(c, args)
			}
			return cobra.ExactArgs(2)(c, args)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return deployRun(cmd.Context(), g, o, args)
		},
	}
	o.register(c)
	o.policy.register(c)
	o.fleet.register(c)
	return c
}

func deployRun(ctx context.Context, g *globalOptions, o *deployOptions, args []string) error {
	if err := o.check(g); err != nil {
		return err
	}
	if o.resume == "" && g.env == "" && g.io.Getenv("SIGNET_ENV") == "" {
		return withHint(usageErrorf("deploy %s: which environment? pass --env NAME", strings.Join(args, " ")),
			"the app file's hosts are narrowed to those whose env fact is NAME, e.g. --env dev (or set SIGNET_ENV)")
	}
	ws, err := g.workflowSession(ctx)
	if err != nil {
		return err
	}
	defer ws.Close()
	opts := deploy.Options{Env: g.env, Yes: o.yes, Plan: o.plan, Output: g.io.Out, Format: o.output,
		Caller: ws.caller, Store: ws.store, User: ws.cfg.User, Log: g.logger()}
	opts.Policy = o.policy.policy()
	opts.Inventory, opts.AllowMissing = o.fleet.inventory, o.fleet.allowMissing
	if opts.Env == "" {
		opts.Env = g.io.Getenv("SIGNET_ENV")
	}
	name := "resume-" + o.resume
	if len(args) == 0 && o.resume != "" {
		// The run knows its app: find the app file by that name.
		st, err := ws.store.Load(ctx, o.resume)
		if err != nil {
			return g.workflowExit(fmt.Errorf("resume %s: %w", o.resume, err))
		}
		args = []string{st.App}
		if opts.Env == "" {
			opts.Env = st.Env
		}
	}
	if len(args) > 0 {
		if opts.AppFile, err = appFile(ws.cfg, args[0]); err != nil {
			return err
		}
		// A wrong app file is a usage error (exit 2), said before any
		// question is asked.
		if _, err := deploy.LoadApp(opts.AppFile); err != nil {
			return asUsage(err)
		}
		name = runName(args[0])
	}
	if len(args) > 1 {
		opts.Version = args[1]
	}
	if !o.plan {
		if opts.LogFile, err = logPath(ws.cfg, o.logFile, name); err != nil {
			return err
		}
	}
	if !o.yes && !o.plan {
		plan := opts
		plan.Plan, plan.Output = true, g.io.Err
		if o.resume == "" {
			if _, err := deploy.Run(ctx, nil, plan); err != nil {
				return err
			}
		}
		ok, err := g.confirm(fmt.Sprintf("deploy %s", strings.Join(args, " ")))
		if err != nil {
			return err
		}
		if !ok {
			return errors.New("deploy not confirmed: nothing was touched")
		}
		opts.Yes = true
	}
	if liveViewOn(*g.io, o.output) {
		opts.View = newLiveView(g.io.Out, colorOn(*g.io)).sink // liveview.go
	}
	ctx, soft, stop := interrupts(ctx, g.io.Err)
	defer stop()
	if o.resume != "" {
		_, err = deploy.Resume(ctx, soft, o.resume, opts)
	} else {
		_, err = deploy.Run(ctx, soft, opts)
	}
	if opts.LogFile != "" && !o.plan {
		fmt.Fprintf(g.io.Err, "run log: %s\n", opts.LogFile)
	}
	return g.workflowExit(err)
}

type workflowOptions struct {
	runFlags
	vars    []string
	version string
}

func newWorkflowCmd(g *globalOptions) *cobra.Command {
	o := &workflowOptions{}
	c := &cobra.Command{
		Use:   "workflow run FILE",
		Short: "Run a custom workflow file (steps over batches of hosts, with checks)",
		Example: `  signet workflow run dr-restore.yaml --env dr --var backup=2026-11-22 --plan
  signet workflow run dr-restore.yaml --resume 7f3a9c --yes`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if args[0] != "run" {
				return usageErrorf("unknown workflow subcommand %q (want: run)", args[0])
			}
			return workflowRun(cmd.Context(), g, o, args[1])
		},
	}
	o.register(c)
	c.Flags().StringArrayVar(&o.vars, "var", nil, "set a workflow variable: name=value (repeatable)")
	c.Flags().StringVar(&o.version, "version", "", "set {{version}}")
	return c
}

func workflowRun(ctx context.Context, g *globalOptions, o *workflowOptions, file string) error {
	if err := o.check(g); err != nil {
		return err
	}
	// A missing or wrong workflow file is a usage error (exit 2), said
	// before anything is asked or connected.
	if err := checkWorkflowFile(file); err != nil {
		return err
	}
	vars := map[string]string{}
	for _, v := range o.vars {
		k, val, ok := strings.Cut(v, "=")
		if !ok || k == "" {
			return usageErrorf("--var %q: want name=value", v)
		}
		vars[k] = val
	}
	ws, err := g.workflowSession(ctx)
	if err != nil {
		return err
	}
	defer ws.Close()
	opts := workflows.Options{WorkflowFile: file, Env: g.env, Version: o.version, Vars: vars, Yes: o.yes, Plan: o.plan,
		Output: g.io.Out, Format: o.output, Caller: ws.caller, Store: ws.store, User: ws.cfg.User, Log: g.logger()}
	if !o.plan {
		if opts.LogFile, err = logPath(ws.cfg, o.logFile, runName(file)); err != nil {
			return err
		}
	}
	if !o.yes && !o.plan {
		ok, err := g.confirm("run " + file)
		if err != nil {
			return err
		}
		if !ok {
			return errors.New("workflow not confirmed: nothing was touched")
		}
		opts.Yes = true
	}
	ctx, soft, stop := interrupts(ctx, g.io.Err)
	defer stop()
	if o.resume != "" {
		_, err = workflows.ResumeWorkflow(ctx, soft, o.resume, opts)
	} else {
		_, err = workflows.RunWorkflow(ctx, soft, opts)
	}
	return g.workflowExit(err)
}

// checkWorkflowFile reads and parses a workflow file.
func checkWorkflowFile(file string) error {
	f, err := os.Open(file)
	if err != nil {
		return withHint(usageErrorf("workflow %s: %v", file, errors.Unwrap(err)), "give the path to a workflow file (see docs/workflows.md)")
	}
	defer f.Close()
	if _, err := workflows.ParseWorkflow(f); err != nil {
		return usageErrorf("%s: %v", file, err)
	}
	return nil
}
