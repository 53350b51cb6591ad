package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/signetbus/signet/bus"
	"github.com/signetbus/signet/internal/redact"

	"github.com/signetbus/signet/workflows"
	"github.com/signetbus/signet/workflows/deploy"
	"github.com/signetbus/signet/workflows/release"
)

type releaseOptions struct {
	yes         bool
	skipDRCheck bool
	reason      string
	// approval: --reason is the release's own, for both.
	approval approvalFlags
}

func newReleaseCmd(g *globalOptions) *cobra.Command {
	o := &releaseOptions{}
	c := &cobra.Command{
		Use:   "release TICKET",
		Short: "Deploy the ordered app=version manifest of a ticket, reporting to chat, mail and the ticket",
		Long: `release reads a title and an ordered list of "app version" lines from a ticket,
asks for confirmation, posts progress to chat, refreshes package repositories,
deploys app after app with the rolling deploy, mails the log, comments on the
ticket and closes it. On any error it stops, reports everywhere and leaves the
ticket open. See docs/releases.md.`,
		Example: `  signet release jira:OPS-123 --env prod
  signet release github:acme/releases#42 --env dr
  signet release ./release-2026-11-23.txt --env dev --yes
  signet release jira:OPS-123 --env prod --yes --wait-approval --reason 'CHG-10'   # one approval for every deploy`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return releaseRun(cmd.Context(), g, o, args[0])
		},
	}
	c.Flags().BoolVarP(&o.yes, "yes", "y", false, "do not ask for confirmation")
	c.Flags().BoolVar(&o.skipDRCheck, "skip-dr-check", false, "run although the manifest has not finished in the environment release.require_done_in names (needs --reason)")
	c.Flags().StringVar(&o.reason, "reason", "", "why the DR check is skipped (shown, posted to chat, logged and kept in the release record), or why the release asks for approval (--wait-approval)")
	o.approval.registerWait(c)
	return c
}

// releaseDeployer runs each app of a release with the rolling deploy.
type releaseDeployer struct {
	g    *globalOptions
	ws   *workflowSession
	env  string
	soft <-chan struct{}
	// prov is the release's provenance: the ticket and the CI build land
	// in every audit record of every deploy.
	prov deploy.Provenance
	// apps records each deploy, for --json.
	apps []releaseApp
	// approved, when set, is the release's approved plan: each deploy
	// must plan exactly its approved deploy (release_approval.go).
	approved *bus.ApprovalPlan
}

// releaseApp is one deploy of a release in its --json result.
type releaseApp struct {
	App     string `json:"app"`
	Version string `json:"version"`
	RunLog  string `json:"run_log,omitempty"`
	OK      bool   `json:"ok"`
	Error   string `json:"error,omitempty"`
}

// releaseResult is what `signet release --json` prints on stdout once the
// release ends; the progress log goes to stderr.
type releaseResult struct {
	Ticket string       `json:"ticket"`
	Env    string       `json:"env"`
	OK     bool         `json:"ok"`
	Error  string       `json:"error,omitempty"`
	Apps   []releaseApp `json:"apps"`
}

// refreshFilter selects the hosts whose repositories a release refreshes.
func (d *releaseDeployer) refreshFilter() []string {
	filter := []string{"agent=package"}
	if d.env != "" {
		filter = append(filter, "env="+d.env)
	}
	return filter
}

func (d *releaseDeployer) Refresh(ctx context.Context) error {
	res, err := d.ws.caller.Call(ctx, workflows.Call{Agent: "package", Action: "refresh", Filter: d.refreshFilter()})
	if err != nil {
		return err
	}
	for _, r := range res {
		if !r.OK {
			why := r.Error
			if r.NoResponse {
				why = "no response"
			}
			return fmt.Errorf("%s: refresh: %s", r.Host, why)
		}
	}
	return nil
}

func (d *releaseDeployer) Deploy(ctx context.Context, app, version string, log io.Writer) (err error) {
	file, err := appFile(d.ws.cfg, app)
	if err != nil {
		return err
	}
	logFile, err := logPath(d.ws.cfg, "", runName(app))
	if err != nil {
		return err
	}
	rec := releaseApp{App: app, Version: version, RunLog: logFile}
	idx := len(d.apps)
	defer func() {
		rec.OK = err == nil
		if err != nil {
			rec.Error = redact.String(err.Error())
		}
		d.apps = append(d.apps, rec)
	}()
	approve, err := d.deployApprover(idx, app, version)
	if err != nil {
		return err
	}
	_, err = deploy.Run(ctx, d.soft, deploy.Options{AppFile: file, Version: version, Env: d.env, Yes: true, Output: log,
		Format: "text", LogFile: logFile, Caller: d.ws.caller, Store: d.ws.store, User: d.ws.cfg.User, Log: d.g.logger(),
		Provenance: d.prov, Approve: approve})
	return err
}

func releaseRun(ctx context.Context, g *globalOptions, o *releaseOptions, ref string) error {
	ws, err := g.workflowSession(ctx)
	if err != nil {
		return err
	}
	defer ws.Close()
	env := g.env
	if env == "" {
		env = g.io.Getenv("SIGNET_ENV")
	}
	rc := ws.cfg.Release
	tc := rc.TicketConfig()
	lookupEnv := func(k string) (string, bool) { v := g.io.Getenv(k); return v, v != "" }
	tc.LookupEnv = lookupEnv
	tc.Log = g.logger()
	ticket, err := release.OpenTicket(ref, tc)
	if err != nil {
		return err
	}
	chat, err := release.NewNotifier(rc.Chat, nil)
	if err != nil {
		return err
	}
	var mailer release.Mailer
	if m, err := release.NewMailer(rc.Mail, lookupEnv); err != nil {
		return err
	} else if m != nil {
		mailer = m
	}
	if o.approval.wait {
		o.approval.reason = o.reason
		if err := o.approval.check(); err != nil {
			return err
		}
	}
	if !o.yes {
		if f, ok := g.io.In.(*os.File); !ok || !isTerminal(f) {
			return usageErrorf("release needs confirmation: pass --yes when there is no terminal to ask on")
		}
	}
	ctx, soft, stop := interrupts(ctx, g.io.Err)
	defer stop()
	// With --json the progress log goes to stderr and stdout gets one
	// JSON result, so Jenkins can parse it.
	out := g.io.Out
	if g.json {
		out = g.io.Err
	}
	records, doneIn, closeDR, err := releaseRecords(ctx, g, ws, rc.RequireDoneIn, o)
	if err != nil {
		return err
	}
	defer closeDR()
	skip := ""
	if o.skipDRCheck {
		skip = o.reason
	}
	d := &releaseDeployer{g: g, ws: ws, env: env, soft: soft, prov: releaseProvenance(g, ref)}
	var approve func(context.Context, *release.Manifest) error
	if o.approval.wait {
		approve = func(ctx context.Context, m *release.Manifest) error { return d.approve(ctx, &o.approval, m) }
	}
	err = release.Run(ctx, release.Options{Ticket: ticket, Chat: chat, Mail: mailer, Deployer: d,
		In: g.io.In, Out: out, Yes: o.yes, Env: env, User: ws.cfg.User, Log: g.logger(),
		Ref: ref, Records: records, RequireDoneIn: rc.RequireDoneIn, DoneIn: doneIn, SkipDoneCheck: skip, Approve: approve})
	if g.json {
		res := releaseResult{Ticket: ref, Env: env, OK: err == nil, Apps: d.apps}
		if err != nil {
			res.Error = redact.String(err.Error())
		}
		if res.Apps == nil {
			res.Apps = []releaseApp{}
		}
		if jerr := g.printer().jsonValue(res); jerr != nil && err == nil {
			return jerr
		}
	}
	return err
}

// releaseRecords opens the signed records of finished releases on this
// environment's broker and, when the profile sets release.require_done_in,
// on that environment's broker too (its own profile: URLs, credentials),
// read with the same trust: this operator's key and resume_keys.
func releaseRecords(ctx context.Context, g *globalOptions, ws *workflowSession, requireDoneIn string, o *releaseOptions) (release.Records, release.Records, func(), error) {
	switch {
	case o.reason != "" && !o.skipDRCheck && !o.approval.wait:
		return nil, nil, nil, usageErrorf("--reason goes with --skip-dr-check or --wait-approval")
	case o.skipDRCheck && strings.TrimSpace(o.reason) == "":
		return nil, nil, nil, usageErrorf("--skip-dr-check needs --reason TEXT: the reason is posted to chat and kept in the release record")
	case o.skipDRCheck && requireDoneIn == "":
		return nil, nil, nil, usageErrorf("--skip-dr-check: this environment's release config sets no require_done_in, so there is no check to skip")
	}
	trusted, err := ws.cfg.resumeKeys()
	if err != nil {
		return nil, nil, nil, err
	}
	js, err := ws.cfg.NATS.JetStream(ws.nc)
	if err != nil {
		return nil, nil, nil, err
	}
	records, err := release.NewKVRecords(ctx, js, ws.signer, trusted)
	if err != nil {
		return nil, nil, nil, err
	}
	if requireDoneIn == "" || o.skipDRCheck {
		return records, nil, func() {}, nil
	}
	other := *g
	other.env = requireDoneIn
	s, err := other.connect(ctx)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("release: require_done_in %s: %w", requireDoneIn, err)
	}
	djs, err := s.cfg.NATS.JetStream(s.nc)
	if err != nil {
		s.Close()
		return nil, nil, nil, err
	}
	doneIn, err := release.NewKVRecords(ctx, djs, nil, append(trusted, ws.signer.PublicKey()))
	if err != nil {
		s.Close()
		return nil, nil, nil, fmt.Errorf("release: require_done_in %s: %w", requireDoneIn, err)
	}
	return records, doneIn, s.Close, nil
}

// releaseProvenance is what every deploy of a release carries into the
// hosts' audit: the ticket reference and, under Jenkins, its BUILD_URL
// (credentials dropped). A reference the hosts would refuse (a long file
// path) is left out, with a warning, rather than failing the release.
func releaseProvenance(g *globalOptions, ref string) deploy.Provenance {
	p := deploy.Provenance{Ticket: ref}
	if u := g.io.Getenv("BUILD_URL"); u != "" {
		p.BuildURL = deploy.CleanBuildURL(u)
	}
	if err := (&bus.Provenance{Ticket: p.Ticket}).Check(); err != nil {
		g.logger().Warn("the ticket reference is not recorded in the hosts' audit", "err", err)
		p.Ticket = ""
	}
	if err := (&bus.Provenance{BuildURL: p.BuildURL}).Check(); err != nil {
		g.logger().Warn("BUILD_URL is not recorded in the hosts' audit", "err", err)
		p.BuildURL = ""
	}
	return p
}
