package release

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Reporter tells chat, mail and a ticket about a run that is not a
// release, such as the monthly DR database restore (a custom workflow), in
// the words a release uses, so that the run logs itself into its ticket.
// Every channel is optional.
type Reporter struct {
	// What names the run: "workflow dr-restore".
	What string
	// Env and User are shown in every message.
	Env, User string
	Chat      Notifier
	Mail      Mailer
	// Ticket receives the log as a comment; closed after a success when
	// CloseTicket is set.
	Ticket      Ticket
	CloseTicket bool
	// Timeout bounds the report after the run (it runs even when the run
	// was interrupted); zero means two minutes.
	Timeout time.Duration
}

// Start posts the start of the run to chat. An error means the run
// should not start: the team would not hear about it.
func (r *Reporter) Start(ctx context.Context) error {
	if r.Chat == nil {
		return nil
	}
	if err := r.Chat.Notify(ctx, fmt.Sprintf("%s started on %s by %s", r.What, r.Env, r.User)); err != nil {
		return fmt.Errorf("chat: %w", err)
	}
	return nil
}

// Finish reports the outcome with the run's log: chat, mail, a comment on
// the ticket, then closing the ticket after a success. It tries every
// channel even when one fails, and returns the failures joined; each
// later channel's text says which earlier one failed.
func (r *Reporter) Finish(ctx context.Context, log string, runErr error) error {
	timeout := r.Timeout
	if timeout <= 0 {
		timeout = 2 * time.Minute
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	outcome, summary := "complete", fmt.Sprintf("%s complete on %s.", r.What, r.Env)
	if runErr != nil {
		outcome, summary = "FAILED", fmt.Sprintf("%s FAILED on %s: %v.", r.What, r.Env, runErr)
	}
	log = strings.TrimRight(log, "\n") + "\n"
	var errs []error
	note := func(err error) {
		errs = append(errs, err)
		log += fmt.Sprintf("ERROR while reporting: %v\n", err)
	}
	if r.Chat != nil {
		text := fmt.Sprintf("%s %s on %s", r.What, outcome, r.Env)
		if runErr != nil {
			text = fmt.Sprintf("%s: %v\n```\n%s```", text, runErr, log)
		}
		if err := r.Chat.Notify(ctx, text); err != nil {
			note(fmt.Errorf("chat: %w", err))
		}
	}
	if r.Mail != nil {
		if err := r.Mail.Send(ctx, fmt.Sprintf("[signet] %s %s on %s", r.What, outcome, r.Env), log); err != nil {
			note(fmt.Errorf("mail the log: %w", err))
		}
	}
	if r.Ticket != nil {
		body := strings.TrimRight(log, "\n")
		if p, ok := r.Ticket.(preformatter); ok {
			body = p.preformat(body)
		}
		head := strings.ToUpper(summary[:1]) + summary[1:]
		if err := r.Ticket.Comment(ctx, head+"\n\n"+body); err != nil {
			note(fmt.Errorf("post the log on the ticket: %w", err))
		} else if runErr == nil && r.CloseTicket {
			if err := r.Ticket.Close(ctx); err != nil {
				note(fmt.Errorf("close the ticket: %w", err))
			}
		}
	}
	return errors.Join(errs...)
}
