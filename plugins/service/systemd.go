package service

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/signetbus/signet/internal/command"
)

// showProperties are the unit properties read by systemctl show.
const showProperties = "ActiveState,SubState,MainPID,LoadState,ActiveEnterTimestamp,ExecMainCode,ExecMainStatus"

// systemd drives units through systemctl.
type systemd struct {
	run runner
}

func (systemd) name() string { return BackendSystemd }

// actArgv is the argument vector of a start, stop, restart or reload.
func (systemd) actArgv(verb, unit string) []string {
	return []string{"systemctl", verb, "--", unit}
}

// statusArgv is the argument vector that reads a unit's state.
func (systemd) statusArgv(unit string) []string {
	return []string{"systemctl", "show", "--property=" + showProperties, "--", unit}
}

func (b systemd) act(ctx context.Context, verb, unit string) error {
	// A command.ExitError carries systemctl's last line of output.
	if _, err := b.run(ctx, command.Spec{Argv: b.actArgv(verb, unit)}); err != nil {
		return fmt.Errorf("systemctl %s %s: %w", verb, unit, err)
	}
	return nil
}

func (b systemd) status(ctx context.Context, unit string) (Status, error) {
	// TZ=UTC makes systemctl print timestamps in a zone Go parses exactly.
	res, err := b.run(ctx, command.Spec{Argv: b.statusArgv(unit), ExtraEnv: []string{"TZ=UTC"}})
	if err != nil {
		return Status{}, fmt.Errorf("systemctl show %s: %w", unit, err)
	}
	st, err := parseShow(res.Stdout)
	if err != nil {
		return Status{}, fmt.Errorf("systemctl show %s: %w", unit, err)
	}
	return st, nil
}

// parseShow parses the KEY=value lines of systemctl show --property=...
// A unit systemd does not know (LoadState=not-found) is ErrNotFound.
func parseShow(out string) (Status, error) {
	props := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimRight(line, "\r")
		if line == "" {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return Status{}, fmt.Errorf("want KEY=value lines, got %q", line)
		}
		props[k] = v
	}
	load, active, sub := props["LoadState"], props["ActiveState"], props["SubState"]
	if load == "" || active == "" {
		return Status{}, fmt.Errorf("want LoadState and ActiveState in the output, got %q", out)
	}
	switch load {
	case "not-found":
		return Status{}, fmt.Errorf("%w: systemd has no such unit (LoadState=not-found)", ErrNotFound)
	case "loaded", "masked", "stub", "merged":
	default: // "error", "bad-setting"
		return Status{}, fmt.Errorf("unit cannot be loaded (LoadState=%s); see systemctl status", load)
	}
	st := Status{Detail: active}
	if sub != "" {
		st.Detail = active + " (" + sub + ")"
	}
	if load == "masked" {
		st.Detail += ", masked"
	}
	if pid := props["MainPID"]; pid != "" {
		n, err := strconv.Atoi(pid)
		if err != nil || n < 0 {
			return Status{}, fmt.Errorf("MainPID: want a process id, got %q", pid)
		}
		st.PID = n
	}
	switch active {
	case "active":
		st.State, st.Active = StateRunning, true
	case "reloading", "refreshing":
		st.State, st.Active = StateReloading, true
	case "inactive":
		st.State = StateStopped
	case "failed":
		st.State = StateFailed
	case "activating":
		st.State = StateStarting
		if sub == "auto-restart" {
			st.State = StateRestarting
		}
	case "deactivating":
		st.State = StateStopping
	default: // "maintenance" and whatever later systemd versions add
		st.State = StateUnknown
	}
	if !st.Active && st.State != StateStopped {
		if last := lastExit(props["ExecMainCode"], props["ExecMainStatus"]); last != "" {
			st.Detail += ", " + last
		}
	}
	if st.State == StateRestarting || st.State == StateFailed {
		st.Hint = "the service keeps exiting; see journalctl -u for its output"
	}
	if st.Active {
		st.Since = parseSystemdTime(props["ActiveEnterTimestamp"])
	}
	return st, nil
}

// lastExit renders how the main process last ended: "exit 1", "signal 9".
// ExecMainCode is a CLD_* code: 1 exited, 2 killed, 3 dumped core.
func lastExit(code, status string) string {
	switch code {
	case "1":
		return "exit " + status
	case "2", "3":
		return "signal " + status
	}
	return ""
}

// parseSystemdTime parses an ActiveEnterTimestamp as systemctl prints it
// with TZ=UTC ("Tue 2024-05-14 10:21:33 UTC") or with --timestamp=unix
// ("@1715682093"). It returns the zero time when the value is empty or in
// another form, which means "unknown" to the wait logic.
func parseSystemdTime(v string) time.Time {
	if v == "" || v == "n/a" {
		return time.Time{}
	}
	if rest, ok := strings.CutPrefix(v, "@"); ok {
		n, err := strconv.ParseInt(rest, 10, 64)
		if err != nil {
			return time.Time{}
		}
		return time.Unix(n, 0)
	}
	t, err := time.Parse("Mon 2006-01-02 15:04:05 MST", v)
	if err != nil || t.Location().String() != "UTC" {
		return time.Time{}
	}
	return t
}
