// Package command runs the programs plugins drive (dpkg, systemctl, sv, ...)
// the only way signet allows: an argument vector, never a shell string, with
// a clean environment, a deadline and bounded output.
package command

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// DefaultMaxOutput bounds what is kept of stdout and of stderr.
const DefaultMaxOutput = 64 << 10

// DefaultEnv is the environment programs run with unless Spec.Env says
// otherwise: a fixed PATH and the C locale, so output parses the same on
// every host.
var DefaultEnv = []string{
	"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	"LANG=C",
	"LC_ALL=C",
}

// Spec describes one program to run.
type Spec struct {
	// Argv is the program and its arguments. Argv[0] is looked up in PATH.
	Argv []string
	// Env replaces DefaultEnv entirely when not nil.
	Env []string
	// ExtraEnv is appended to the environment (DEBIAN_FRONTEND=noninteractive, say).
	ExtraEnv []string
	// Dir is the working directory; empty means "/".
	Dir string
	// Stdin is fed to the program.
	Stdin []byte
	// MaxOutput bounds stdout and stderr each; zero means DefaultMaxOutput.
	MaxOutput int
	// KillGrace is how long the process group has between SIGTERM and
	// SIGKILL when the context ends first; zero means DefaultKillGrace.
	KillGrace time.Duration
}

// Result is what a finished program left behind.
type Result struct {
	Argv      []string      `json:"argv"`
	ExitCode  int           `json:"exit_code"`
	Stdout    string        `json:"stdout,omitempty"`
	Stderr    string        `json:"stderr,omitempty"`
	Truncated bool          `json:"truncated,omitempty"`
	Duration  time.Duration `json:"duration"`
}

// ExitError is returned when the program ran but exited non-zero.
type ExitError struct {
	Result *Result
}

func (e *ExitError) Error() string {
	msg := lastLine(e.Result.Stderr)
	if msg == "" {
		msg = lastLine(e.Result.Stdout)
	}
	if msg == "" {
		return fmt.Sprintf("%s exited with status %d", e.Result.Argv[0], e.Result.ExitCode)
	}
	return fmt.Sprintf("%s exited with status %d: %s", e.Result.Argv[0], e.Result.ExitCode, msg)
}

// ErrEmptyArgv is returned for a Spec without a program.
var ErrEmptyArgv = errors.New("command: empty argument vector")

// Run runs the program and waits for it. The program runs in its own
// process group; when the context ends first, the whole group (the program
// and every child it left, such as dpkg under apt-get) is sent SIGTERM and,
// after Spec.KillGrace, SIGKILL, and Run returns the Result and a
// *TimeoutError naming what was killed. A non-zero exit returns the Result
// and an *ExitError; a program that could not start returns a nil Result.
func Run(ctx context.Context, spec Spec) (*Result, error) {
	if len(spec.Argv) == 0 || spec.Argv[0] == "" {
		return nil, ErrEmptyArgv
	}
	max := spec.MaxOutput
	if max <= 0 {
		max = DefaultMaxOutput
	}
	cmd := exec.CommandContext(ctx, spec.Argv[0], spec.Argv[1:]...)
	cmd.Env = spec.Env
	if cmd.Env == nil {
		cmd.Env = append([]string(nil), DefaultEnv...)
	}
	cmd.Env = append(cmd.Env, spec.ExtraEnv...)
	cmd.Dir = spec.Dir
	if cmd.Dir == "" {
		cmd.Dir = "/"
	}
	if spec.Stdin != nil {
		cmd.Stdin = bytes.NewReader(spec.Stdin)
	}
	stdout := &limitedBuffer{max: max}
	stderr := &limitedBuffer{max: max}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	grace := spec.KillGrace
	if grace <= 0 {
		grace = DefaultKillGrace
	}
	// Its own group, so a timeout reaches the children too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	start := time.Now()
	var killed []Proc
	var ranFor time.Duration
	cmd.Cancel = func() error {
		ranFor = time.Since(start)
		// The leader is not reaped before Cancel returns, so its pid (the
		// group id) cannot have been reused.
		killed = killGroup(cmd.Process.Pid, grace)
		return nil
	}
	// After the group is killed, or after the program exits while a child
	// it left behind holds its output, stop waiting for the output.
	cmd.WaitDelay = grace + 2*time.Second
	err := cmd.Run()
	res := &Result{
		Argv:      append([]string(nil), spec.Argv...),
		Stdout:    stdout.String(),
		Stderr:    stderr.String(),
		Truncated: stdout.truncated || stderr.truncated,
		Duration:  time.Since(start),
		ExitCode:  -1,
	}
	if cmd.ProcessState != nil {
		res.ExitCode = cmd.ProcessState.ExitCode()
	}
	if err != nil {
		if ctx.Err() != nil && cmd.Process != nil {
			return res, &TimeoutError{Program: spec.Argv[0], After: ranFor, PGID: cmd.Process.Pid, Killed: killed, Err: ctx.Err()}
		}
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return res, &ExitError{Result: res}
		}
		return nil, fmt.Errorf("run %s: %w", spec.Argv[0], err)
	}
	return res, nil
}

type limitedBuffer struct {
	buf       bytes.Buffer
	max       int
	truncated bool
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	room := b.max - b.buf.Len()
	if room < len(p) {
		b.truncated = true
		if room > 0 {
			b.buf.Write(p[:room])
		}
		return len(p), nil
	}
	return b.buf.Write(p)
}

func (b *limitedBuffer) String() string {
	if b.truncated {
		return b.buf.String() + "\n[output truncated]"
	}
	return b.buf.String()
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return strings.TrimSpace(s)
}
