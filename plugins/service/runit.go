package service

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/signetbus/signet/internal/command"
	"github.com/signetbus/signet/internal/lazyre"
)

// DefaultServiceDir is the runit service directory (SVDIR) used when the
// config sets none.
const DefaultServiceDir = "/etc/service"

// runit drives services supervised by runsv through sv. sv takes no "--";
// the service name grammar (no leading '-', '.' or '/', no '/') keeps a
// name from being read as an option or a path.
type runit struct {
	dir string // SVDIR
	run runner
	now func() time.Time
}

func (runit) name() string { return BackendRunit }

// actArgvs are the sv invocations of one verb. sv's own start, stop and
// restart wait up to 7 seconds and print "timeout"; the low-level
// commands used here only tell runsv what to do, and the plugin's wait
// logic checks the outcome. restart is what sv restart sends: TERM, CONT,
// then up.
func (runit) actArgvs(verb, service string) ([][]string, error) {
	var cmds []string
	switch verb {
	case verbStart:
		cmds = []string{"up"}
	case verbStop:
		cmds = []string{"down"}
	case verbReload:
		cmds = []string{"hup"}
	case verbRestart:
		cmds = []string{"term", "cont", "up"}
	default:
		return nil, fmt.Errorf("runit: unknown verb %q", verb)
	}
	argvs := make([][]string, len(cmds))
	for i, c := range cmds {
		argvs[i] = []string{"sv", c, service}
	}
	return argvs, nil
}

func (b runit) env() []string { return []string{"SVDIR=" + b.dir} }

func (b runit) act(ctx context.Context, verb, service string) error {
	argvs, err := b.actArgvs(verb, service)
	if err != nil {
		return err
	}
	for _, argv := range argvs {
		if _, err := b.run(ctx, command.Spec{Argv: argv, ExtraEnv: b.env()}); err != nil {
			return fmt.Errorf("sv %s %s: %w", argv[1], service, err)
		}
	}
	return nil
}

func (b runit) status(ctx context.Context, service string) (Status, error) {
	res, err := b.run(ctx, command.Spec{Argv: []string{"sv", "status", service}, ExtraEnv: b.env()})
	// sv exits 1 for "fail:" and "warning:" lines; those are parsed below.
	var ee *command.ExitError
	if err != nil && !errors.As(err, &ee) {
		return Status{}, fmt.Errorf("sv status %s: %w", service, err)
	}
	st, perr := parseSvStatus(res.Stdout, service, b.now())
	if perr != nil {
		if errors.Is(perr, ErrNotFound) {
			return Status{}, fmt.Errorf("%w: runit has no service %s in %s", ErrNotFound, service, b.dir)
		}
		return Status{}, fmt.Errorf("sv status %s: %w", service, perr)
	}
	if err != nil {
		return Status{}, fmt.Errorf("sv status %s: %w", service, err)
	}
	return st, nil
}

// svTail matches what follows "run: name: " or "down: name: ":
// an optional "(pid 123) ", the seconds in that state, and flags.
var svTail = lazyre.New(`^(?:\(pid (\d+)\) )?(\d+)s(?:, (.*))?$`)

// parseSvStatus parses the first line of sv status for one service, such as
//
//	run: web: (pid 123) 5s; run: log: (pid 124) 5s
//	run: web: (pid 123) 5s, want down
//	down: web: 3s, normally up, want up
//	finish: web: (pid 130) 0s, normally up
//	fail: web: unable to change to service directory: file does not exist
//	warning: web: unable to open supervise/ok: file does not exist
//
// The part after "; " is the log service and is ignored.
func parseSvStatus(out, service string, now time.Time) (Status, error) {
	line, _, _ := strings.Cut(strings.TrimSpace(out), "\n")
	line, _, _ = strings.Cut(line, "; ")
	kind, rest, ok := strings.Cut(line, ": ")
	if !ok {
		return Status{}, fmt.Errorf("want \"state: %s: ...\", got %q", service, line)
	}
	rest, ok = strings.CutPrefix(rest, service+": ")
	if !ok {
		return Status{}, fmt.Errorf("want \"%s: %s: ...\", got %q", kind, service, line)
	}
	switch kind {
	case "fail", "warning":
		if strings.Contains(rest, "unable to change to service directory") {
			return Status{}, fmt.Errorf("%w: %s", ErrNotFound, rest)
		}
		return Status{}, fmt.Errorf("runsv is not supervising %s (%s); is runsvdir running on the service directory?", service, rest)
	case "run", "down", "finish":
	default:
		return Status{}, fmt.Errorf("unknown state %q in %q", kind, line)
	}
	m := svTail.FindStringSubmatch(rest)
	if m == nil {
		return Status{}, fmt.Errorf("want \"(pid N) Ns, flags\" after the name, got %q", line)
	}
	pid := 0
	if m[1] != "" {
		n, err := strconv.Atoi(m[1])
		if err != nil {
			return Status{}, fmt.Errorf("pid in %q: %w", line, err)
		}
		pid = n
	}
	secs, err := strconv.ParseInt(m[2], 10, 64)
	if err != nil {
		return Status{}, fmt.Errorf("seconds in %q: %w", line, err)
	}
	var flags []string
	if m[3] != "" {
		flags = strings.Split(m[3], ", ")
	}
	has := func(f string) bool {
		for _, x := range flags {
			if x == f {
				return true
			}
		}
		return false
	}
	st := Status{Since: now.Add(-time.Duration(secs) * time.Second), Detail: strings.Join(append([]string{kind}, flags...), ", ")}
	switch kind {
	case "run":
		st.State, st.Active, st.PID = StateRunning, true, pid
		if has("want down") || has("want exit") || has("got TERM") {
			st.State = StateStopping
		}
	case "down":
		st.State = StateStopped
		if has("want up") {
			st.State = StateStarting
			st.Hint = "runsv starts it again every second; if it stays down, ./run exits at once or cannot be executed: see the service's log"
		}
	case "finish":
		st.State = StateFinishing
		st.Detail = fmt.Sprintf("finish script pid %d", pid)
		if len(flags) > 0 {
			st.Detail += ", " + strings.Join(flags, ", ")
		}
	}
	return st, nil
}
