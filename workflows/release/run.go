package release

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// Deployer deploys one app; the CLI wires it to the rolling deploy.
type Deployer interface {
	// Refresh refreshes the package repositories on the targets.
	Refresh(ctx context.Context) error
	// Deploy rolls app out at version, writing progress lines to log.
	Deploy(ctx context.Context, app, version string, log io.Writer) error
}

// Options is one `signet release` run.
type Options struct {
	// Ticket holds the manifest and receives the log (required).
	Ticket Ticket
	// Chat receives progress messages; nil means no chat.
	Chat Notifier
	// Mail receives the log; nil means no mail.
	Mail Mailer
	// Deployer deploys each app (required).
	Deployer Deployer
	// In is where the operator's confirmation is read (required unless Yes).
	In io.Reader
	// Out receives the list, the prompt and the log as it is written.
	Out io.Writer
	// Yes skips the confirmation (scripted runs).
	Yes bool
	// Env names the environment profile (dev, dr, prod), shown everywhere.
	Env string
	// User is the operator, shown everywhere.
	User string
	// Log receives diagnostics; nil discards them.
	Log *slog.Logger
	// Now stamps the log; nil means time.Now.
	Now func() time.Time
	// ReportTimeout bounds the failure report (mail, chat, ticket), which
	// runs even when ctx is cancelled; zero means two minutes.
	ReportTimeout time.Duration

	// Ref is the ticket reference as the operator gave it, kept in the
	// record of the finished release.
	Ref string
	// Records, when set, receives a signed record of the release once
	// every app is deployed (this environment's broker).
	Records Records
	// RequireDoneIn names the environment (such as "dr") where the same
	// manifest must have finished before this release may start; DoneIn
	// reads that environment's records. Empty: no such check.
	RequireDoneIn string
	DoneIn        Records
	// SkipDoneCheck, when not empty, is the operator's reason to run
	// without the RequireDoneIn check. It is shown before confirmation,
	// posted to chat, written in the log (mail, ticket) and kept in the
	// signed record.
	SkipDoneCheck string
	// Approve, when set, is given the manifest once the operator has
	// confirmed and before anything is posted or deployed: the two-person
	// rule's hook (the CLI submits the release's plan, every deploy in
	// it, for one approval and waits). An error stops the release with
	// nothing posted or deployed.
	Approve func(ctx context.Context, m *Manifest) error
}

// ErrAborted is returned when the operator does not type "yes". Nothing has
// been deployed or posted.
var ErrAborted = errors.New("release: aborted by the operator, nothing was deployed or posted")

// Error is a release that stopped. Cause is what stopped it (a deploy, the
// repository refresh, a chat, mail or ticket failure, a cancelled context);
// Report lists what failed while telling mail, chat and the ticket about it.
// errors.Is and errors.As see Cause and every Report error.
type Error struct {
	Cause     error
	Deployed  []Item // apps deployed before the stop
	Remaining []Item // apps not deployed (the failed one first)
	Report    []error
}

func (e *Error) Error() string {
	var b strings.Builder
	if len(e.Remaining) == 0 {
		fmt.Fprintf(&b, "release: all %d apps deployed but the release did not finish: %v", len(e.Deployed), e.Cause)
	} else {
		fmt.Fprintf(&b, "release failed after %d of %d apps: %v", len(e.Deployed), len(e.Deployed)+len(e.Remaining), e.Cause)
	}
	for _, r := range e.Report {
		fmt.Fprintf(&b, "; reporting also failed: %v", r)
	}
	return b.String()
}

func (e *Error) Unwrap() []error {
	return append([]error{e.Cause}, e.Report...)
}

// channel names a reporting channel, to skip the one that just failed.
type channel int

const (
	viaNone channel = iota
	viaChat
	viaMail
	viaTicket
)

// Run performs a release: fetch and parse the ticket, show the list and ask
// the operator to type "yes", announce the start in chat, refresh package
// repositories, deploy each app in order (announcing each in chat),
// announce completion, mail the log, post it on the ticket and close the
// ticket.
//
// Nothing is posted before the operator confirms: a fetch or parse error,
// or an answer other than "yes", is returned to the operator only.
//
// After confirmation any error stops the release at once: no further app
// is deployed, the log with the error is mailed, posted in chat and on the
// ticket, the ticket stays open, and Run returns an *Error holding the
// cause and any reporting failures.
func Run(ctx context.Context, opts Options) error {
	if err := opts.check(); err != nil {
		return err
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	out := opts.Out
	if out == nil {
		out = io.Discard
	}
	title, body, err := opts.Ticket.Fetch(ctx)
	if err != nil {
		return fmt.Errorf("release: fetch ticket: %w", err)
	}
	m, err := ParseManifest(title, body)
	if err != nil {
		return fmt.Errorf("release: ticket %q: %w", title, err)
	}

	done, err := opts.checkDoneIn(ctx, m)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "release %q to %s as %s, %d apps in this order:\n", m.Title, opts.Env, opts.User, len(m.Items))
	for i, it := range m.Items {
		fmt.Fprintf(out, "  %2d. %s %s\n", i+1, it.App, it.Version)
	}
	if done != "" {
		fmt.Fprintln(out, done)
	}
	if !opts.Yes {
		fmt.Fprintf(out, "type yes to deploy to %s: ", opts.Env)
		answer, err := bufio.NewReader(opts.In).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("release: read confirmation: %w", err)
		}
		if strings.TrimSpace(answer) != "yes" {
			fmt.Fprintln(out, "aborted")
			return ErrAborted
		}
	}

	if opts.Approve != nil {
		if err := opts.Approve(ctx, m); err != nil {
			return fmt.Errorf("release: not approved, nothing was deployed or posted: %w", err)
		}
	}
	r := &run{opts: opts, m: m, log: &runLog{out: out, now: now}, done: done}
	return r.do(ctx)
}

// checkDoneIn checks, before anything is shown or posted, that the same
// manifest finished in RequireDoneIn. It returns the line that says what
// was found (or why the check was skipped) for the list and the log.
func (o *Options) checkDoneIn(ctx context.Context, m *Manifest) (string, error) {
	if o.RequireDoneIn == "" {
		return "", nil
	}
	if o.SkipDoneCheck != "" {
		return fmt.Sprintf("%s check SKIPPED by %s: %s", o.RequireDoneIn, o.User, o.SkipDoneCheck), nil
	}
	digest := ManifestDigest(m.Items)
	hint := fmt.Sprintf("release the same manifest to %s first, or pass --skip-dr-check --reason TEXT (posted to chat and kept in the record)", o.RequireDoneIn)
	if o.DoneIn == nil {
		return "", fmt.Errorf("release: %s must finish this manifest first, but its records cannot be read; %s", o.RequireDoneIn, hint)
	}
	rec, pub, err := o.DoneIn.Get(ctx, digest)
	switch {
	case errors.Is(err, ErrNoRecord):
		return "", fmt.Errorf("release: these %d apps (manifest sha256 %.12s) have not finished in %s: no release of them is recorded there; %s",
			len(m.Items), digest, o.RequireDoneIn, hint)
	case err != nil:
		return "", fmt.Errorf("release: check that the manifest finished in %s: %w; %s", o.RequireDoneIn, err, hint)
	case rec.Env != o.RequireDoneIn:
		return "", fmt.Errorf("release: the record of this manifest on %s's broker says it finished in %q, not %s; %s",
			o.RequireDoneIn, rec.Env, o.RequireDoneIn, hint)
	case !rec.matches(m.Items):
		return "", fmt.Errorf("release: the record of this manifest on %s's broker lists other apps; %s", o.RequireDoneIn, hint)
	}
	return fmt.Sprintf("%s check passed: the same %d apps finished in %s on %s (ticket %q, by %s, record signed by %s)",
		o.RequireDoneIn, len(m.Items), rec.Env, rec.Finished.UTC().Format(time.RFC3339), rec.Title, rec.User, ssh.FingerprintSHA256(pub)), nil
}

func (o *Options) check() error {
	switch {
	case o.Ticket == nil:
		return errors.New("release: no ticket")
	case o.Deployer == nil:
		return errors.New("release: no deployer")
	case o.In == nil && !o.Yes:
		return errors.New("release: no input to read the confirmation from, and Yes not set")
	}
	for what, v := range map[string]string{"environment": o.Env, "user": o.User} {
		if v == "" {
			return fmt.Errorf("release: empty %s", what)
		}
		if strings.ContainsFunc(v, func(r rune) bool { return r < 0x20 || r == 0x7f }) || len(v) > 64 {
			return fmt.Errorf("release: %s %q: expected one short line without control characters", what, v)
		}
	}
	if o.SkipDoneCheck != "" {
		if o.RequireDoneIn == "" {
			return errors.New("release: --skip-dr-check: this environment's release config sets no require_done_in, so there is no check to skip")
		}
		if strings.ContainsFunc(o.SkipDoneCheck, func(r rune) bool { return r < 0x20 || r == 0x7f }) || len(o.SkipDoneCheck) > 200 {
			return errors.New("release: --reason: expected one line of at most 200 characters without control characters")
		}
	}
	if o.RequireDoneIn != "" && o.RequireDoneIn == o.Env {
		return fmt.Errorf("release: require_done_in names %s itself: it must name another environment, such as dr", o.Env)
	}
	return nil
}

type run struct {
	opts     Options
	m        *Manifest
	log      *runLog
	deployed int
	done     string // the outcome of the RequireDoneIn check, for the log
}

func (r *run) do(ctx context.Context) error {
	o, m := r.opts, r.m
	r.log.Printf("release %q on %s started by %s", m.Title, o.Env, o.User)
	for i, it := range m.Items {
		r.log.Printf("  %d. %s %s", i+1, it.App, it.Version)
	}
	if ro, ok := o.Ticket.(ReadOnly); ok {
		r.log.Printf("%s", ro.Note())
	}
	if o.Chat == nil {
		r.log.Printf("chat is not configured: no messages will be posted")
	}
	if o.Mail == nil {
		r.log.Printf("mail is not configured: the log will not be mailed")
	}
	if r.done != "" {
		r.log.Printf("%s", r.done)
	}
	if o.RequireDoneIn != "" && o.SkipDoneCheck != "" {
		if err := r.notify(ctx, fmt.Sprintf("%s check SKIPPED for the release on %s by %s: %s (reason: %s)",
			o.RequireDoneIn, o.Env, o.User, m.Title, o.SkipDoneCheck)); err != nil {
			return r.fail(ctx, err, viaChat)
		}
	}

	var apps []string
	for _, it := range m.Items {
		apps = append(apps, it.App+" "+it.Version)
	}
	if err := r.notify(ctx, fmt.Sprintf("release started on %s by %s: %s (%d apps: %s)",
		o.Env, o.User, m.Title, len(m.Items), strings.Join(apps, ", "))); err != nil {
		return r.fail(ctx, err, viaChat)
	}

	r.log.Printf("refreshing package repositories")
	if err := o.Deployer.Refresh(ctx); err != nil {
		return r.fail(ctx, fmt.Errorf("refresh package repositories: %w", err), viaNone)
	}
	r.log.Printf("package repositories refreshed")

	n := len(m.Items)
	for i, it := range m.Items {
		if err := ctx.Err(); err != nil {
			return r.fail(ctx, fmt.Errorf("stopped before %s %s: %w", it.App, it.Version, err), viaNone)
		}
		step := fmt.Sprintf("%s %s (%d of %d) on %s", it.App, it.Version, i+1, n, o.Env)
		if err := r.notify(ctx, "deploying "+step); err != nil {
			return r.fail(ctx, err, viaChat)
		}
		r.log.Printf("deploying %s", step)
		w := r.log.Writer("  " + it.App + ": ")
		err := o.Deployer.Deploy(ctx, it.App, it.Version, w)
		w.Flush()
		if err != nil {
			return r.fail(ctx, fmt.Errorf("deploy %s %s (%d of %d): %w", it.App, it.Version, i+1, n, err), viaNone)
		}
		r.deployed++
		r.log.Printf("deployed %s", step)
		if err := r.notify(ctx, "deployed "+step); err != nil {
			return r.fail(ctx, err, viaChat)
		}
	}

	if o.Records != nil {
		rec := &Record{Manifest: ManifestDigest(m.Items), Apps: recordItems(m.Items), Env: o.Env, Title: m.Title,
			Ticket: o.Ref, User: o.User, Finished: r.log.now().UTC()}
		if o.RequireDoneIn != "" {
			rec.DRCheckSkipped = o.SkipDoneCheck
		}
		if err := o.Records.Put(ctx, rec); err != nil {
			return r.fail(ctx, fmt.Errorf("record the finished release on %s's broker: %w", o.Env, err), viaNone)
		}
		r.log.Printf("recorded as finished on %s (manifest sha256 %s)", o.Env, rec.Manifest)
	}
	if err := r.notify(ctx, fmt.Sprintf("release complete on %s: %s (%d apps deployed)", o.Env, m.Title, n)); err != nil {
		return r.fail(ctx, err, viaChat)
	}
	r.log.Printf("release complete: %d apps deployed", n)

	if o.Mail != nil {
		if err := o.Mail.Send(ctx, r.subject("complete"), r.log.String()); err != nil {
			return r.fail(ctx, fmt.Errorf("mail the log: %w", err), viaMail)
		}
		r.log.Printf("log mailed")
	}
	if err := o.Ticket.Comment(ctx, r.comment("Release complete on "+o.Env+": all apps deployed.")); err != nil {
		return r.fail(ctx, fmt.Errorf("post the log on the ticket: %w", err), viaTicket)
	}
	if err := o.Ticket.Close(ctx); err != nil {
		return r.fail(ctx, fmt.Errorf("close the ticket: %w", err), viaNone)
	}
	if _, ro := o.Ticket.(ReadOnly); ro {
		r.log.Printf("ticket left as it is: it cannot be closed")
	} else {
		r.log.Printf("ticket closed")
	}
	return nil
}

func (r *run) notify(ctx context.Context, text string) error {
	if r.opts.Chat == nil {
		return nil
	}
	if err := r.opts.Chat.Notify(ctx, text); err != nil {
		return fmt.Errorf("chat: %w", err)
	}
	return nil
}

func (r *run) subject(outcome string) string {
	return fmt.Sprintf("[signet] release %s on %s: %s", outcome, r.opts.Env, r.m.Title)
}

// comment is what the ticket receives: a summary line and the log, shown
// as preformatted text where the ticket's markup needs it.
func (r *run) comment(summary string) string {
	log := strings.TrimRight(r.log.String(), "\n")
	if p, ok := r.opts.Ticket.(preformatter); ok {
		log = p.preformat(log)
	}
	return summary + "\n\n" + log
}

// fail stops the release: it logs the cause, then tells mail, chat and the
// ticket (except the channel that just failed), each seeing the failures of
// those before it. The ticket is not closed.
func (r *run) fail(ctx context.Context, cause error, skip channel) error {
	o, m := r.opts, r.m
	e := &Error{Cause: cause, Deployed: m.Items[:r.deployed], Remaining: m.Items[r.deployed:]}
	r.log.Printf("ERROR: %v", cause)
	if len(e.Remaining) > 0 {
		var left []string
		for _, it := range e.Remaining {
			left = append(left, it.App+" "+it.Version)
		}
		r.log.Printf("release stopped: %d of %d apps deployed; not deployed: %s", r.deployed, len(m.Items), strings.Join(left, ", "))
	} else {
		r.log.Printf("release stopped: all %d apps deployed, but the release did not finish", len(m.Items))
	}
	r.log.Printf("the ticket stays open")

	// Report even when the operator interrupted the run.
	timeout := o.ReportTimeout
	if timeout <= 0 {
		timeout = 2 * time.Minute
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	report := func(err error) {
		e.Report = append(e.Report, err)
		r.log.Printf("ERROR while reporting: %v", err)
	}

	if o.Mail != nil && skip != viaMail {
		if err := o.Mail.Send(rctx, r.subject("FAILED"), r.log.String()); err != nil {
			report(fmt.Errorf("mail the log: %w", err))
		} else {
			r.log.Printf("log mailed")
		}
	}
	if o.Chat != nil && skip != viaChat {
		text := fmt.Sprintf("release FAILED on %s: %s: %v\n```\n%s```", o.Env, m.Title, cause, r.log.String())
		if err := o.Chat.Notify(rctx, text); err != nil {
			report(fmt.Errorf("chat: %w", err))
		}
	}
	if skip != viaTicket {
		summary := fmt.Sprintf("Release FAILED on %s: %v. The ticket stays open.", o.Env, cause)
		if err := o.Ticket.Comment(rctx, r.comment(summary)); err != nil {
			report(fmt.Errorf("post the log on the ticket: %w", err))
		}
	}
	if o.Log != nil {
		o.Log.Error("release failed", "ticket", m.Title, "env", o.Env, "err", e)
	}
	return e
}
