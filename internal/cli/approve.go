package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/crypto/ssh"

	"github.com/signetbus/signet/bus"
	"github.com/signetbus/signet/workflows"
	"github.com/signetbus/signet/workflows/buscaller"
	"github.com/signetbus/signet/workflows/deploy"
)

// approvalFlags are rpc's two-person-rule flags: submit the request for
// approval, wait for it, then send it with the approvals.
type approvalFlags struct {
	wait    bool
	reason  string
	expires time.Duration
	count   int
}

func (a *approvalFlags) register(c *cobra.Command) {
	c.Flags().StringVar(&a.reason, "reason", "", "why, shown to the approver and signed into the approval (required with --wait-approval)")
	a.registerWait(c)
}

// registerWait registers the flags but --reason, for a command that has
// its own (release).
func (a *approvalFlags) registerWait(c *cobra.Command) {
	f := c.Flags()
	f.BoolVar(&a.wait, "wait-approval", false, "submit the request for approval (signet approve ID), wait for it, then send it carrying the approvals")
	f.DurationVar(&a.expires, "approval-expires", time.Hour, "how long the request may wait for approval and be sent under it")
	f.IntVar(&a.count, "approvals", 1, "how many approvals from other operators to wait for (the hosts' policy decides how many count)")
}

func (a *approvalFlags) check() error {
	if !a.wait {
		if a.reason != "" {
			return usageErrorf("--reason is for --wait-approval")
		}
		return nil
	}
	if strings.TrimSpace(a.reason) == "" {
		return usageErrorf("--wait-approval needs --reason: the approver sees it and signs it")
	}
	if a.expires <= 0 || a.count < 1 {
		return usageErrorf("--approval-expires must be positive and --approvals at least 1")
	}
	return nil
}

// runApproved is run under the two-person rule: the request's subject is
// submitted to the approvals bucket, and once enough other operators have
// approved it the request is sent carrying the subject and approvals.
func (g *globalOptions) runApproved(ctx context.Context, q *queryFlags, af *approvalFlags, agent, action string, params map[string]any) (*bus.Outcome, error) {
	s, err := g.connect(ctx)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	query, err := q.query(s.cfg, agent, action, params)
	if err != nil {
		return nil, err
	}
	store, err := s.approvalStore(ctx)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	sub := bus.ApprovalSubject{Kind: bus.SubjectRequest, Collective: s.cfg.Collective,
		Requester: ssh.FingerprintSHA256(bus.KeySigner(s.signer).PublicKey()), RequesterName: s.cfg.User,
		Reason: af.reason, Expires: now.Add(af.expires).UnixMilli(),
		Agent: agent, Action: action, Params: params, Filter: query.Filter, Targets: query.Targets}
	id := bus.NewID()
	if err := store.Submit(ctx, s.signer, &bus.PendingRequest{ID: id, Subject: sub, Created: now.UnixMilli()}); err != nil {
		return nil, err
	}
	fmt.Fprintf(g.io.Err, "request %s waits for %d approval(s) until %s\nhint: another operator runs `signet approve %s`\n",
		id, af.count, stampMS(sub.Expires), id)
	approvals, err := store.Wait(ctx, id, af.count, time.Now)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(g.io.Err, "approved by %s; sending\n", strings.Join(approverNames(approvals), ", "))
	query.Approval = &bus.ApprovalProof{Subject: sub, Approvals: approvals}
	return g.send(ctx, s, q, query)
}

func approverNames(sas []bus.SignedApproval) []string {
	var out []string
	for i := range sas {
		if a, _, err := bus.OpenApproval(&sas[i]); err == nil {
			out = append(out, a.Approver)
		}
	}
	return out
}

// defaultApprovalMax bounds an approval's validity unless the approver
// gives --expires.
const defaultApprovalMax = 24 * time.Hour

// approveOptions is `signet approve ID`.
type approveOptions struct {
	yes     bool
	expires time.Duration
}

func newApproveCmd(g *globalOptions) *cobra.Command {
	o := &approveOptions{}
	c := &cobra.Command{
		Use:   "approve ID",
		Short: "Show a pending request or plan and approve it with your key (the two-person rule)",
		Example: `  signet approvals
  signet approve 3f9c...   # shows what would be approved
  signet approve 3f9c... --yes`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return approveRun(cmd.Context(), g, o, args[0])
		},
	}
	c.Flags().BoolVar(&o.yes, "yes", false, "sign the approval (without it the request is only shown)")
	c.Flags().DurationVar(&o.expires, "expires", 0, "how long the approval is valid (default: until the request expires, at most 24h)")
	return c
}

func approveRun(ctx context.Context, g *globalOptions, o *approveOptions, id string) error {
	if err := bus.CheckID(id); err != nil {
		return usageErrorf("%v", err)
	}
	s, store, err := g.approvalSession(ctx)
	if err != nil {
		return err
	}
	defer s.Close()
	p, err := store.Get(ctx, id)
	if err != nil {
		return withHint(err, "`signet approvals` lists the pending requests")
	}
	sub := &p.Request.Subject
	showSubject(g.io.Out, p)
	now := time.Now()
	if sub.Expires <= now.UnixMilli() {
		return fmt.Errorf("request %s expired at %s: the requester submits it again", id, stampMS(sub.Expires))
	}
	me := ssh.FingerprintSHA256(bus.KeySigner(s.signer).PublicKey())
	if me == sub.Requester {
		return fmt.Errorf("request %s is your own (key %s): another operator must approve it", id, me)
	}
	if !o.yes {
		fmt.Fprintf(g.io.Err, "not approved yet\nhint: check the request above, then run `signet approve %s --yes`\n", id)
		return nil
	}
	// By default until the request expires, but for a day at most: the
	// requester chose that expiry.
	expires := time.UnixMilli(min(sub.Expires, now.Add(defaultApprovalMax).UnixMilli()))
	if o.expires > 0 {
		expires = now.Add(o.expires)
	}
	sa, err := bus.SignApproval(s.signer, s.cfg.User, sub, now, expires)
	if err != nil {
		return err
	}
	if err := store.Approve(ctx, id, sa); err != nil {
		return err
	}
	fmt.Fprintf(g.io.Err, "approved %s as %s (%s), valid until %s\n", id, s.cfg.User, me, stampMS(expires.UnixMilli()))
	return nil
}

// showSubject prints what an approver approves.
func showSubject(w io.Writer, p *bus.Pending) {
	sub := &p.Request.Subject
	fmt.Fprintf(w, "request:   %s\n", p.Request.ID)
	fmt.Fprintf(w, "requester: %s (%s)\n", sub.RequesterName, sub.Requester)
	fmt.Fprintf(w, "reason:    %s\n", sub.Reason)
	fmt.Fprintf(w, "expires:   %s\n", stampMS(sub.Expires))
	fmt.Fprintf(w, "digest:    %s\n", p.Digest)
	if sub.Plan != nil {
		pl := sub.Plan
		if sub.Root != nil {
			fmt.Fprintf(w, "root:      %s over %d calls (each step request proves its call is one of them)\n", sub.Root.Hash, sub.Root.Leaves)
		}
		if pl.Workflow == "release" {
			fmt.Fprintf(w, "plan:      release %s to %s (manifest sha256 %s)\n", pl.App, pl.Env, pl.Version)
		} else {
			fmt.Fprintf(w, "plan:      %s %s %s to %s\n", pl.Workflow, pl.App, pl.Version, pl.Env)
		}
		for i, b := range pl.Batches {
			fmt.Fprintf(w, "batch %d:   %s\n", i+1, strings.Join(b, " "))
		}
		for _, st := range pl.Steps {
			fmt.Fprintf(w, "step:      %s %s.%s %s on %s\n", st.Name, st.Agent, st.Action, paramsText(st.Params), addressText(st.Hosts, st.Filter))
		}
		showRollback(w, "rollback:  ", pl.Steps)
		for _, d := range pl.Deploys {
			fmt.Fprintf(w, "deploy:    %s %s to %s\n", d.App, d.Version, d.Env)
			for i, b := range d.Batches {
				fmt.Fprintf(w, "  batch %d: %s\n", i+1, strings.Join(b, " "))
			}
			for _, st := range d.Steps {
				fmt.Fprintf(w, "  step:    %s %s.%s %s on %s\n", st.Name, st.Agent, st.Action, paramsText(st.Params), addressText(st.Hosts, st.Filter))
			}
			showRollback(w, "  rollback: ", d.Steps)
		}
		return
	}
	fmt.Fprintf(w, "action:    %s.%s\n", sub.Agent, sub.Action)
	fmt.Fprintf(w, "params:    %s\n", paramsText(sub.Params))
	fmt.Fprintf(w, "targets:   %s\n", addressText(sub.Targets, sub.Filter))
}

// showRollback prints, for a deploy plan that holds on_failure rollback,
// the version each host goes back to: the version read from it before
// the plan was submitted.
func showRollback(w io.Writer, head string, steps []bus.PlanStep) {
	for _, st := range steps {
		if st.Name != deploy.RollbackStepPrefix+deploy.StepUpdate {
			continue
		}
		v, _ := st.Params["version"].(string)
		fmt.Fprintf(w, "%s%s back to %s\n", head, strings.Join(st.Hosts, " "), v)
	}
}

func paramsText(p map[string]any) string {
	if len(p) == 0 {
		return "{}"
	}
	b, _ := json.Marshal(p)
	return string(b)
}

func addressText(hosts []string, f bus.Filter) string {
	if len(hosts) > 0 {
		return strings.Join(hosts, " ")
	}
	if f.IsZero() {
		return "every host"
	}
	b, _ := json.Marshal(f)
	return "hosts matching " + string(b)
}

// approvalsOptions is `signet approvals`.
type approvalsOptions struct{}

func newApprovalsCmd(g *globalOptions) *cobra.Command {
	o := &approvalsOptions{}
	return &cobra.Command{
		Use:   "approvals",
		Short: "List pending requests and plans with their approvals and expiry",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return approvalsRun(cmd.Context(), g, o)
		},
	}
}

func approvalsRun(ctx context.Context, g *globalOptions, _ *approvalsOptions) error {
	s, store, err := g.approvalSession(ctx)
	if err != nil {
		return err
	}
	defer s.Close()
	now := time.Now()
	list, err := store.List(ctx, now)
	if err != nil {
		return err
	}
	type jsonApproval struct {
		Approver string `json:"approver"`
		Key      string `json:"key"`
		Expires  string `json:"expires"`
	}
	type jsonPending struct {
		ID        string              `json:"id"`
		Subject   bus.ApprovalSubject `json:"subject"`
		Digest    string              `json:"digest"`
		Expires   string              `json:"expires"`
		Approvals []jsonApproval      `json:"approvals"`
	}
	var rows [][]string
	var js []jsonPending
	for _, p := range list {
		sub := &p.Request.Subject
		jp := jsonPending{ID: p.Request.ID, Subject: *sub, Digest: p.Digest, Expires: stampMS(sub.Expires), Approvals: []jsonApproval{}}
		var names []string
		for _, sa := range p.Valid(now) {
			if a, _, err := bus.OpenApproval(&sa); err == nil {
				jp.Approvals = append(jp.Approvals, jsonApproval{a.Approver, a.Key, stampMS(a.Expires)})
				names = append(names, fmt.Sprintf("%s until %s", a.Approver, stampMS(a.Expires)))
			}
		}
		js = append(js, jp)
		what := sub.Agent + "." + sub.Action + " " + paramsText(sub.Params) + " on " + addressText(sub.Targets, sub.Filter)
		if sub.Plan != nil {
			what = planText(sub.Plan)
		}
		approvals := "none"
		if len(names) > 0 {
			approvals = strings.Join(names, ", ")
		}
		rows = append(rows, []string{p.Request.ID, sub.RequesterName, what, sub.Reason, approvals, stampMS(sub.Expires)})
	}
	p := g.printer()
	if p.json {
		if js == nil {
			js = []jsonPending{}
		}
		return p.jsonValue(js)
	}
	if len(rows) == 0 {
		fmt.Fprintf(g.io.Err, "no pending requests in collective %s\n", s.cfg.Collective)
		return nil
	}
	slices.SortStableFunc(rows, func(a, b []string) int { return strings.Compare(a[5], b[5]) })
	p.table([]string{"ID", "REQUESTER", "WHAT", "REASON", "APPROVALS", "EXPIRES"}, rows)
	return nil
}

// planText is a plan in one line, for the list and the requester.
func planText(pl *bus.ApprovalPlan) string {
	if pl.Workflow == "release" {
		return fmt.Sprintf("release %s to %s (%d deploys, %d steps)", pl.App, pl.Env, len(pl.Deploys), len(pl.AllSteps()))
	}
	return fmt.Sprintf("%s %s %s to %s (%d steps)", pl.Workflow, pl.App, pl.Version, pl.Env, len(pl.Steps))
}

// planApprover is the deploy's and workflow's approval hook: the plan
// becomes an ApprovalSubject of kind plan, submitted for approval; once
// approved, the caller carries it and its approvals on every step request.
func (g *globalOptions) planApprover(ws *workflowSession, af *approvalFlags, info buscaller.PlanInfo) func(context.Context, *workflows.PlanView) error {
	return func(ctx context.Context, pv *workflows.PlanView) error {
		plan, err := buscaller.PlanSubject(pv, info)
		if err != nil {
			return err
		}
		proof, err := g.submitPlan(ctx, ws, af, plan)
		if err != nil {
			return err
		}
		ws.caller.Approval = proof
		return nil
	}
}

// submitPlan submits a plan (a deploy's, a workflow's or a release's) for
// approval and waits until af.count other operators approved it; it
// returns what every request of the plan carries.
func (g *globalOptions) submitPlan(ctx context.Context, ws *workflowSession, af *approvalFlags, plan *bus.ApprovalPlan) (*bus.ApprovalProof, error) {
	store, err := ws.approvalStore(ctx)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	sub := bus.ApprovalSubject{Collective: ws.cfg.Collective,
		Requester: ssh.FingerprintSHA256(bus.KeySigner(ws.signer).PublicKey()), RequesterName: ws.cfg.User,
		Reason: af.reason, Expires: now.Add(af.expires).UnixMilli()}
	// Approved by its Merkle root: each step request carries its own
	// step and a proof, not the plan (docs/security.md).
	if err := sub.SetPlan(plan); err != nil {
		return nil, err
	}
	id := bus.NewID()
	if err := store.Submit(ctx, ws.signer, &bus.PendingRequest{ID: id, Subject: sub, Created: now.UnixMilli()}); err != nil {
		return nil, err
	}
	what := "plan"
	if plan.Workflow == "release" {
		what = "release plan"
	}
	fmt.Fprintf(g.io.Err, "%s %s (%s) waits for %d approval(s) until %s\nhint: another operator runs `signet approve %s`\n",
		what, id, planText(plan), af.count, stampMS(sub.Expires), id)
	approvals, err := store.Wait(ctx, id, af.count, time.Now)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(g.io.Err, "%s approved by %s; running\n", what, strings.Join(approverNames(approvals), ", "))
	return &bus.ApprovalProof{Subject: sub, Approvals: approvals}, nil
}
