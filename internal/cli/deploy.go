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

	"github.com/spf13/cobra"

	"github.com/signetbus/signet/bus"
	"github.com/signetbus/signet/internal/redact"
	"github.com/signetbus/signet/workflows"
	"github.com/signetbus/signet/workflows/buscaller"
	"github.com/signetbus/signet/workflows/deploy"
	"github.com/signetbus/signet/workflows/release"
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
	f.StringVarP(&r.output, "output", "o", "", "progress format: live (the default on a terminal: a view redrawn in place), text (lines, the default on a pipe) or json (one event per line)")
	f.StringVar(&r.logFile, "log-file", "", "write the complete run log here (default RUNS/NAME-TIME.jsonl)")
	f.StringVar(&r.resume, "resume", "", "continue the run with this id from where it stopped")
}

// check validates the flags. The global --json means --output json, so
// one flag gives JSON from every command.
func (r *runFlags) check(g *globalOptions) error {
	switch r.output {
	case "", "live", "text", "json":
	default:
		return usageErrorf("--output must be live, text or json, not %q", r.output)
	}
	if g.json {
		r.output = "json"
	}
	return nil
}

// planFormat is the format of --plan and the confirmation's plan: the
// live view is for runs.
func (r *runFlags) planFormat() string {
	if r.output == "json" {
		return "json"
	}
	return "text"
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
	js, err := s.cfg.NATS.JetStream(s.nc)
	if err != nil {
		s.Close()
		return nil, err
	}
	if s.registry(ctx) == nil {
		// Say why when the broker can: JetStream not answering, or a
		// cluster without its majority, is not a lost registry.
		if _, perr := registryUnavailable(ctx, js, s.cfg.Collective); perr != nil {
			s.Close()
			return nil, perr
		}
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
	octx, cancel := context.WithTimeout(ctx, storeOpenTimeout)
	store, err := workflows.NewKVStore(octx, js, workflows.KVConfig{Signer: bus.KeySigner(s.signer), ResumeKeys: resumeKeys, Log: g.logger(), Replicas: s.cfg.NATS.Replicas})
	cancel()
	if err != nil {
		s.Close()
		return nil, withHint(fmt.Errorf("the run state and locks are unavailable: %w", err), storeHint)
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
	policy   policyFlags
	approval approvalFlags
	rollout  rolloutFlags
	prov     provenanceFlags
	fleet    fleetFlags
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
  signet deploy middleware 1.4.2 --env prod --yes --on-failure rollback --ticket CHG-1234 --sha256 3a7d...
  signet deploy middleware 1.4.2 --env prod --inventory prod-middleware.hosts --plan
  signet deploy middleware 1.4.2 --env prod --yes --strategy window --allow-missing
  signet deploy --resume 7f3a9c`,
		Args: func(c *cobra.Command, args []string) error {
			if o.resume != "" || o.rollout.promote != "" || o.rollout.abort != "" {
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
	o.approval.register(c)
	o.rollout.register(c)
	o.prov.register(c)
	o.fleet.register(c)
	return c
}

func deployRun(ctx context.Context, g *globalOptions, o *deployOptions, args []string) error {
	if err := o.check(g); err != nil {
		return err
	}
	if err := o.approval.check(); err != nil {
		return err
	}
	if o.approval.wait && o.resume != "" {
		return usageErrorf("--wait-approval is for a new deploy, not --resume")
	}
	decision, decide, err := o.rollout.decision()
	if err != nil {
		return err
	}
	if decide {
		if o.resume != "" {
			return usageErrorf("--promote and --abort continue the run themselves: leave out --resume")
		}
		if o.approval.wait {
			return usageErrorf("--wait-approval is for a new deploy, not --promote or --abort")
		}
		// The decision is the confirmation; the run is found like --resume.
		o.resume, o.yes = decision.Run, true
	}
	prov, err := o.prov.provenance(g.io.Getenv, o.resume != "")
	if err != nil {
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
	opts := deploy.Options{Env: g.env, Yes: o.yes, Plan: o.plan, Output: g.io.Out, Format: o.planFormat(),
		Caller: ws.caller, Store: ws.store, User: ws.cfg.User, Log: g.logger()}
	opts.Policy = o.policy.policy()
	opts.Rollout = o.rollout.rollout()
	opts.Provenance = prov
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
	if o.approval.wait {
		opts.Approve = g.planApprover(ws, &o.approval, buscaller.PlanInfo{Workflow: "deploy", App: args[0], Version: opts.Version, Env: opts.Env})
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
	ctx, soft, stop := interrupts(ctx, g.io.Err)
	defer stop()
	if !o.plan {
		var closeOut func()
		opts.Output, opts.Format, closeOut = g.runOutput(o.output)
		defer closeOut()
	}
	var recap *workflows.Recap
	switch {
	case decide:
		_, err = deploy.Decide(ctx, soft, decision, opts)
	case o.resume != "":
		recap, err = deploy.Resume(ctx, soft, o.resume, opts)
	default:
		recap, err = deploy.Run(ctx, soft, opts)
	}
	if opts.LogFile != "" && !o.plan {
		fmt.Fprintf(g.io.Err, "run log: %s\n", opts.LogFile)
	}
	if decide {
		return g.decided(err)
	}
	return g.haltExit("signet deploy --resume", recap, err)
}

type workflowOptions struct {
	runFlags
	vars        []string
	version     string
	ticket      string
	closeTicket bool
	approval    approvalFlags
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
	c.Flags().StringVar(&o.ticket, "ticket", "", "post the run's log on this ticket (jira:KEY-1, github:owner/repo#1, a file), as a release does")
	c.Flags().BoolVar(&o.closeTicket, "close-ticket", false, "close the --ticket after a successful run")
	o.approval.register(c)
	return c
}

func workflowRun(ctx context.Context, g *globalOptions, o *workflowOptions, file string) error {
	if err := o.check(g); err != nil {
		return err
	}
	if err := o.approval.check(); err != nil {
		return err
	}
	if o.approval.wait && o.resume != "" {
		return usageErrorf("--wait-approval is for a new run, not --resume")
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
		Output: g.io.Out, Format: o.planFormat(), Caller: ws.caller, Store: ws.store, User: ws.cfg.User, Log: g.logger()}
	if o.approval.wait {
		opts.Approve = g.planApprover(ws, &o.approval, buscaller.PlanInfo{Workflow: "workflow", App: runName(file), Version: o.version, Env: opts.Env})
	}
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
	var rep *release.Reporter
	if !o.plan {
		if rep, err = workflowReporter(g, ws, o, file); err != nil {
			return err
		}
	}
	ctx, soft, stop := interrupts(ctx, g.io.Err)
	defer stop()
	if rep != nil {
		if err := rep.Start(ctx); err != nil {
			return fmt.Errorf("workflow not started: its report: %w", err)
		}
	}
	if !o.plan {
		var closeOut func()
		opts.Output, opts.Format, closeOut = g.runOutput(o.output)
		defer closeOut()
	}
	var recap *workflows.Recap
	if o.resume != "" {
		recap, err = workflows.ResumeWorkflow(ctx, soft, o.resume, opts)
	} else {
		recap, err = workflows.RunWorkflow(ctx, soft, opts)
	}
	if rep != nil {
		if ferr := rep.Finish(ctx, redact.String(runLogText(opts.LogFile)), err); ferr != nil {
			fmt.Fprintf(g.io.Err, "signet: reporting the run: %v\n", ferr)
			if err == nil {
				err = fmt.Errorf("the workflow finished but its report did not: %w", ferr)
			}
		}
	}
	return g.haltExit("signet workflow run "+file+" --resume", recap, err)
}

// runLogText is the run log rendered as text for a report; when it
// cannot be read the report says so instead.
func runLogText(path string) string {
	var b strings.Builder
	f, err := os.Open(path)
	if err == nil {
		err = workflows.WriteTextLog(&b, f)
		f.Close()
	}
	if err != nil {
		fmt.Fprintf(&b, "(the run log %s could not be read in full: %v)\n", path, err)
	}
	return b.String()
}

// workflowReporter builds the report a workflow file asks for (report:
// chat, mail) and --ticket, from the environment's release section.
func workflowReporter(g *globalOptions, ws *workflowSession, o *workflowOptions, file string) (*release.Reporter, error) {
	if o.closeTicket && o.ticket == "" {
		return nil, usageErrorf("--close-ticket needs --ticket REF")
	}
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	w, err := workflows.ParseWorkflow(f)
	f.Close()
	if err != nil {
		return nil, usageErrorf("%s: %v", file, err)
	}
	if !w.Report.Chat && !w.Report.Mail && o.ticket == "" {
		return nil, nil
	}
	env := g.env
	if env == "" {
		env = "(no env)"
	}
	rep := &release.Reporter{What: "workflow " + w.Name, Env: env, User: ws.cfg.User, CloseTicket: o.closeTicket}
	rc := ws.cfg.Release
	if w.Report.Chat {
		if !rc.Chat.Enabled() {
			return nil, usageErrorf("%s: report.chat: the release section of this environment's config has no chat webhook (see docs/releases.md)", file)
		}
		if rep.Chat, err = release.NewNotifier(rc.Chat, nil); err != nil {
			return nil, err
		}
	}
	lookupEnv := func(k string) (string, bool) { v := g.io.Getenv(k); return v, v != "" }
	if w.Report.Mail {
		if !rc.Mail.Enabled() {
			return nil, usageErrorf("%s: report.mail: the release section of this environment's config has no mail relay (see docs/releases.md)", file)
		}
		m, err := release.NewMailer(rc.Mail, lookupEnv)
		if err != nil {
			return nil, err
		}
		rep.Mail = m
	}
	if o.ticket != "" {
		tc := rc.TicketConfig()
		tc.LookupEnv = lookupEnv
		tc.Log = g.logger()
		if rep.Ticket, err = release.OpenTicket(o.ticket, tc); err != nil {
			return nil, err
		}
	}
	return rep, nil
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
