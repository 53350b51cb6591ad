package cli

import (
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/signetbus/signet/bus"
	"github.com/signetbus/signet/internal/redact"
)

// Exit codes, as the README documents them.
const (
	ExitOK      = 0 // every targeted host succeeded
	ExitFailed  = 1 // some host failed or did not respond, or signet could not run
	ExitUsage   = 2 // the command line or a config file is wrong
	ExitNoMatch = 3 // no host matched the filter
)

// The kinds of error that choose an exit code. Anything else is a failure
// to run (ExitFailed). exitCode is the only place that turns them into
// codes, and it never looks at an error's text.
//
//   - *usageError: the command line or a config file is wrong (ExitUsage).
//     Cobra's own flag and argument errors are wrapped into it where cobra
//     returns them (markUsage).
//   - bus.ErrNoMatch: no host matched the filter (ExitNoMatch).
//   - *partialFailure: the outcome is printed and some host failed or did
//     not answer (ExitFailed, nothing more printed).
//   - *checkResult: signet status printed its Nagios line; its code (0 OK,
//     1 WARNING, 2 CRITICAL, 3 UNKNOWN) is the exit code.

// usageError is a mistake in how signet was called.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usageErrorf(format string, a ...any) error { return &usageError{fmt.Sprintf(format, a...)} }

// asUsage marks err as a usage error; nil stays nil.
func asUsage(err error) error {
	var ue *usageError
	if err == nil || errors.As(err, &ue) {
		return err
	}
	return &usageError{err.Error()}
}

// partialFailure reports an outcome already printed in which some host
// failed or did not answer.
type partialFailure struct{}

func (*partialFailure) Error() string { return "some hosts failed or did not answer" }

// hintError adds a "hint:" line for the operator.
type hintError struct {
	err  error
	hint string
}

func (e *hintError) Error() string { return e.err.Error() }
func (e *hintError) Unwrap() error { return e.err }

func withHint(err error, hint string) error { return &hintError{err: err, hint: hint} }

// exitCode prints err for the operator and returns the exit code its kind
// calls for.
func exitCode(err error, stderr io.Writer, prog string) int {
	if err == nil {
		return ExitOK
	}
	var pf *partialFailure
	if errors.As(err, &pf) {
		return ExitFailed
	}
	var cr *checkResult
	if errors.As(err, &cr) {
		return cr.code // a monitoring check's verdict, already printed (signet status)
	}
	fmt.Fprintf(stderr, "%s: %s\n", prog, redact.String(err.Error()))
	var he *hintError
	if errors.As(err, &he) {
		fmt.Fprintf(stderr, "hint: %s\n", he.hint)
	}
	var ue *usageError
	switch {
	case errors.As(err, &ue):
		return ExitUsage
	case errors.Is(err, bus.ErrNoMatch):
		return ExitNoMatch
	}
	return ExitFailed
}

// markUsage makes cobra's own errors usage errors where cobra returns them:
// flag parsing (through the flag error func every subcommand inherits) and
// argument validation (each command's Args, wrapped). Call it on the root
// once every command is added.
//
// Cobra checks a root command's arguments for an unknown subcommand only
// while its Args is nil, and returns that error before any hook runs. So
// the root gets Args of its own, and a Run that shows help, which is what
// cobra does for a bare root anyway.
func markUsage(root *cobra.Command) {
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return asUsage(err) })
	if root.HasSubCommands() {
		// Add cobra's help and completion commands now, so their Args
		// are wrapped too (cobra would add them when it executes).
		root.InitDefaultHelpCmd()
		root.InitDefaultCompletionCmd()
	}
	if root.HasSubCommands() && root.Args == nil {
		root.Args = unknownCommand
		if root.Run == nil && root.RunE == nil {
			root.RunE = func(c *cobra.Command, _ []string) error { return c.Help() }
		}
	}
	var wrap func(c *cobra.Command)
	wrap = func(c *cobra.Command) {
		if args := c.Args; args != nil {
			c.Args = func(c *cobra.Command, a []string) error { return asUsage(args(c, a)) }
		}
		for _, s := range c.Commands() {
			wrap(s)
		}
	}
	wrap(root)
}

// unknownCommand is cobra's check for a root command's arguments: any
// argument there is a subcommand that does not exist.
func unknownCommand(c *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	msg := fmt.Sprintf("unknown command %q for %q", args[0], c.CommandPath())
	if c.SuggestionsMinimumDistance <= 0 {
		c.SuggestionsMinimumDistance = 2 // cobra's default, set only on its own path
	}
	if s := c.SuggestionsFor(args[0]); len(s) > 0 {
		msg += fmt.Sprintf(" (did you mean %s?)", s[0])
	}
	return usageErrorf("%s", msg)
}
