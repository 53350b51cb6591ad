package service

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/signetbus/signet/internal/command"
)

// States a service can be found in, as reported in Result.Data["state"].
// Backends map their own words onto these; the backend's words go to
// Status.Detail.
const (
	StateRunning    = "running"    // up (systemd active, runit run)
	StateStopped    = "stopped"    // down and meant to stay down (systemd inactive, runit down)
	StateFailed     = "failed"     // down after a failure (systemd failed)
	StateStarting   = "starting"   // on its way up (systemd activating, runit down but wanted up)
	StateRestarting = "restarting" // down between automatic restarts (systemd auto-restart)
	StateStopping   = "stopping"   // on its way down (systemd deactivating, runit run but wanted down)
	StateReloading  = "reloading"  // reloading its configuration (systemd reloading)
	StateFinishing  = "finishing"  // runit: the finish script runs
	StateUnknown    = "unknown"    // a state this plugin does not know (Detail has the backend's words)
)

// ErrNotFound is returned when the backend has no such service.
var ErrNotFound = errors.New("service: no such service")

// Status is what a backend reports about one service.
type Status struct {
	// State is one of the State* constants.
	State string
	// Active reports whether the service's process is up (systemd active
	// or reloading, runit run).
	Active bool
	// PID is the main process id, 0 when none.
	PID int
	// Since is when the service entered its current state; zero when the
	// backend does not say.
	Since time.Time
	// Detail is the backend's own description, such as "active (running)"
	// or "normally up, want up".
	Detail string
	// Hint, when set, says what the state probably means for an operator.
	Hint string
}

// stopped reports whether the service is down and will stay down.
func (s Status) stopped() bool { return s.State == StateStopped || s.State == StateFailed }

// describe renders the status for an error message:
// "running (pid 12, up 0s)", "stopped (inactive (dead))".
func (s Status) describe(now time.Time) string {
	var parts []string
	if s.PID != 0 {
		parts = append(parts, fmt.Sprintf("pid %d", s.PID))
	}
	if s.Detail != "" {
		parts = append(parts, s.Detail)
	}
	if s.State == StateRunning && !s.Since.IsZero() {
		parts = append(parts, "up "+now.Sub(s.Since).Truncate(time.Second).String())
	}
	if len(parts) == 0 {
		return s.State
	}
	return s.State + " (" + strings.Join(parts, ", ") + ")"
}

// Verbs a backend acts with.
const (
	verbStart   = "start"
	verbStop    = "stop"
	verbRestart = "restart"
	verbReload  = "reload"
)

// backend drives one service manager. The state-wait logic in wait.go is
// the same for all of them.
type backend interface {
	// name is "systemd" or "runit".
	name() string
	// status reports the service's state; ErrNotFound (wrapped) when the
	// service manager has no such service.
	status(ctx context.Context, service string) (Status, error)
	// act asks the service manager to start, stop, restart or reload the
	// service. It may return before the service is in the new state.
	act(ctx context.Context, verb, service string) error
}

// runner runs a program; command.Run outside tests.
type runner func(ctx context.Context, spec command.Spec) (*command.Result, error)
