package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/signetbus/signet/internal/audit"
	"github.com/signetbus/signet/internal/audit/ship"
	"github.com/signetbus/signet/internal/keys"
	"github.com/signetbus/signet/internal/redact"
)

// auditOptions are the filters of `signet audit`.
type auditOptions struct {
	hosts     []string
	operator  string
	agent     string
	action    string
	decision  string
	request   string
	run       string
	since     string
	until     string
	files     []string
	maxAge    time.Duration
	fromStart bool
	trust     string
}

func newAuditCmd(g *globalOptions) *cobra.Command {
	o := &auditOptions{}
	c := &cobra.Command{
		Use:   "audit",
		Short: "Query the audit records the hosts shipped to the broker",
		Long: `Query the audit records every signetd ships to the broker's JetStream stream
signet_audit_COLLECTIVE. Filters combine (all must match). "signet audit verify" checks
that nothing was edited, deleted, reordered or cut.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return auditRun(cmd.Context(), g, o) },
	}
	f := c.Flags()
	f.StringArrayVar(&o.hosts, "host", nil, "only this host (repeatable)")
	f.StringVar(&o.operator, "operator", "", "only requests from this operator (trust-file name or claimed user)")
	f.StringVar(&o.agent, "agent", "", "only this agent")
	f.StringVar(&o.action, "action", "", "only this action")
	f.StringVar(&o.decision, "decision", "", "only this decision: started, accepted, refused, dropped, duplicate, suppressed, checkpoint")
	f.StringVar(&o.request, "request", "", "only this request id")
	f.StringVar(&o.run, "run", "", "only the requests of this workflow run (a deploy or a release; its id as `signet workflow status` shows it)")
	f.StringVar(&o.since, "since", "", "only records at or after this time: RFC 3339 or a duration ago such as 24h")
	f.StringVar(&o.until, "until", "", "only records before this time: RFC 3339 or a duration ago")
	v := &cobra.Command{
		Use:   "verify",
		Short: "Check the audit hash chains and signed checkpoints; exit 1 on any finding",
		Long: `Check every host's audit chain in the broker's stream (or in log files with --file):
each line's seq and the hash of the line before it, each checkpoint's signature
against the host key in known_hosts (or, for a host trusted through an
@cert-authority line, the host certificate the checkpoint carries), and each
record's stored request signature: the operator's signature over the request, and
that the record's request id, sender, agent, action and parameters are the signed
ones. Reports edited, deleted, reordered and truncated records and request
signatures that do not verify by host and seq, and exits 1 if there is any finding.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return auditVerifyRun(cmd.Context(), g, o) },
	}
	vf := v.Flags()
	vf.StringArrayVar(&o.files, "file", nil, "verify this host audit log file instead of the stream (repeatable, oldest first: audit.jsonl.1 then audit.jsonl)")
	vf.StringArrayVar(&o.hosts, "host", nil, "only this host (repeatable)")
	vf.DurationVar(&o.maxAge, "max-age", 0, "report a host whose newest line is older than this (twice audit.checkpoint_interval): its tail may have been cut")
	vf.StringVar(&o.trust, "trust", "", "the hosts' authorized_keys: each request must be signed by a key it lists under the record's operator name, or carry a certificate of a cert-authority it lists")
	vf.BoolVar(&o.fromStart, "from-start", false, "with --file: the files hold the whole log, so it must begin at seq 1 (the stream always must)")
	c.AddCommand(v)
	return c
}

// auditStream connects to the broker named in the client config; reading
// the stream needs no signing key.
func auditStream(ctx context.Context, g *globalOptions, cfg *ClientConfig) (*nats.Conn, jetstream.JetStream, error) {
	opts, err := natsOptions(cfg, g.logger())
	if err != nil {
		return nil, nil, err
	}
	nc, err := nats.Connect(strings.Join(cfg.NATS.URLs, ","), opts...)
	if err != nil {
		return nil, nil, withHint(fmt.Errorf("connect to broker %s: %w", strings.Join(cfg.NATS.URLs, ","), err),
			"is the broker running? start one with `signet broker` or a whole fleet with `signet lab`")
	}
	js, err := cfg.NATS.JetStream(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, js, nil
}

func parseWhen(flag, s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, usageErrorf("--%s %q: want RFC 3339 (2026-11-24T09:00:00Z) or a duration ago (24h)", flag, s)
	}
	return t, nil
}

func (o *auditOptions) match(e *audit.Entry, since, until time.Time) bool {
	return (o.operator == "" || e.Principal == o.operator || e.User == o.operator) &&
		(o.agent == "" || e.Agent == o.agent) && (o.action == "" || e.Action == o.action) &&
		(o.decision == "" || e.Decision == o.decision) && (o.request == "" || e.RequestID == o.request) &&
		(o.run == "" || e.Provenance.RunID() == o.run) &&
		(since.IsZero() || !e.Time.Before(since)) && (until.IsZero() || e.Time.Before(until))
}

func auditRun(ctx context.Context, g *globalOptions, o *auditOptions) error {
	now := time.Now()
	since, err := parseWhen("since", o.since, now)
	if err != nil {
		return err
	}
	until, err := parseWhen("until", o.until, now)
	if err != nil {
		return err
	}
	cfg, err := loadClientConfig(g.config, g.env, g.io.Getenv)
	if err != nil {
		return err
	}
	nc, js, err := auditStream(ctx, g, cfg)
	if err != nil {
		return err
	}
	defer nc.Close()
	// The broker's storage time is at or after the record's: start the
	// read a little before --since and filter on the record's time.
	q := ship.Query{Hosts: o.hosts}
	if !since.IsZero() {
		q.Since = since.Add(-time.Minute)
	}
	lines, err := ship.Read(ctx, js, cfg.Collective, q)
	if err != nil {
		return err
	}
	p := g.printer()
	var rows [][]string
	var out []json.RawMessage
	for _, ln := range lines {
		e, err := audit.ParseLine(ln.Raw)
		if err != nil || !o.match(e, since, until) {
			continue
		}
		if p.json {
			out = append(out, json.RawMessage(ln.Raw))
			continue
		}
		op := e.Principal
		if op == "" {
			op = e.User
		}
		what := e.Status
		detail := e.Summary
		if e.Reason != "" {
			detail = e.Reason
		}
		rows = append(rows, []string{e.Time.UTC().Format(time.RFC3339), e.Identity, strconv.FormatUint(e.Seq, 10), op,
			e.Agent, e.Action, e.Decision, string(what), e.RequestID, e.Provenance.RunID(), redact.String(detail)})
	}
	if p.json {
		if out == nil {
			out = []json.RawMessage{}
		}
		return p.jsonValue(out)
	}
	p.table([]string{"TIME", "HOST", "SEQ", "OPERATOR", "AGENT", "ACTION", "DECISION", "STATUS", "REQUEST", "RUN", "DETAIL"}, rows)
	fmt.Fprintf(g.io.Err, "%d records\n", len(rows))
	return nil
}

func auditVerifyRun(ctx context.Context, g *globalOptions, o *auditOptions) error {
	cfg, err := loadClientConfig(g.config, g.env, g.io.Getenv)
	if err != nil {
		return err
	}
	known, err := keys.LoadKnownHosts(cfg.KnownHosts)
	if err != nil {
		return withHint(err, "checkpoints are checked against the host keys in known_hosts; `signetd --print-host-key` prints a host's line")
	}
	var lines []audit.Line
	var stateFinding *audit.Finding
	opts := audit.VerifyOptions{HostKey: known.Lookup, HostCA: known.HostCA, MaxAge: o.maxAge, Now: time.Now(), FromStart: o.fromStart}
	if o.trust != "" {
		if opts.Signers, err = loadSigners(o.trust); err != nil {
			return err
		}
	}
	if len(o.files) > 0 {
		for _, path := range o.files {
			b, err := os.ReadFile(path)
			if err != nil {
				return fmt.Errorf("audit verify: %w", err)
			}
			lines = append(lines, audit.FileLines(b, path)...)
		}
	} else {
		opts.FromStart = true
		nc, js, err := auditStream(ctx, g, cfg)
		if err != nil {
			return err
		}
		defer nc.Close()
		if lines, err = ship.Read(ctx, js, cfg.Collective, ship.Query{Hosts: o.hosts}); err != nil {
			return err
		}
		if len(o.hosts) == 0 {
			if lost, err := ship.Lost(ctx, js, cfg.Collective); err != nil {
				return err
			} else if lost != nil {
				stateFinding = lost
			}
		}
	}
	rep := audit.Verify(lines, opts)
	if stateFinding != nil {
		rep.Findings = append(rep.Findings, *stateFinding)
	}
	if len(o.hosts) > 0 && len(o.files) > 0 {
		rep = keepHosts(rep, o.hosts)
	}
	p := g.printer()
	if p.json {
		if rep.Hosts == nil {
			rep.Hosts = []audit.HostSummary{}
		}
		if rep.Findings == nil {
			rep.Findings = []audit.Finding{}
		}
		if err := p.jsonValue(rep); err != nil {
			return err
		}
	} else {
		var rows [][]string
		for _, f := range rep.Findings {
			rows = append(rows, []string{f.Host, strconv.FormatUint(f.Seq, 10), f.Kind, f.Detail, f.Where})
		}
		p.table([]string{"HOST", "SEQ", "FINDING", "DETAIL", "WHERE"}, rows)
	}
	for _, h := range rep.Hosts {
		fmt.Fprintf(g.io.Err, "%s: seq %d to %d, %d lines, %d checkpoints verified, %d lines after the last one, %d request signatures verified\n", h.Host, h.First, h.Last, h.Records, h.Checkpoints, h.Unsigned, h.Requests)
	}
	if len(rep.Findings) > 0 {
		fmt.Fprintf(g.io.Err, "%d findings: the audit trail was changed or is incomplete\n", len(rep.Findings))
		return &partialFailure{}
	}
	fmt.Fprintf(g.io.Err, "no findings in %d lines from %d hosts\n", len(lines), len(rep.Hosts))
	return nil
}

// loadSigners reads an authorized_keys file as the operator trust that
// verify checks request signers against. It is read, not trusted: a loose
// mode is no reason to refuse an auditor's copy.
func loadSigners(path string) (*audit.Signers, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("audit verify: --trust: %w", err)
	}
	list, err := keys.ParseAuthorizedKeys(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("audit verify: --trust %s: %w", path, err)
	}
	s := &audit.Signers{Keys: map[string]string{}, CAs: map[string]bool{}}
	for _, a := range list {
		if a.CA {
			s.CAs[a.KeyBlob] = true
		} else {
			s.Keys[a.KeyBlob] = a.Name
		}
	}
	return s, nil
}

func keepHosts(rep *audit.Report, hosts []string) *audit.Report {
	keep := map[string]bool{}
	for _, h := range hosts {
		keep[h] = true
	}
	out := &audit.Report{}
	for _, h := range rep.Hosts {
		if keep[h.Host] {
			out.Hosts = append(out.Hosts, h)
		}
	}
	for _, f := range rep.Findings {
		if keep[f.Host] {
			out.Findings = append(out.Findings, f)
		}
	}
	return out
}
