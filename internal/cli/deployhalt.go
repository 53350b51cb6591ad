package cli

import (
	"errors"
	"fmt"
	"strings"

	"github.com/signetbus/signet/workflows"
)

// haltExit is workflowExit for a run that started: when it ended without
// finishing (failed, stopped, interrupted) and its state was recorded, the
// hint says what state the run is in (which hosts are done, which failed
// or were left out of rotation, how many are not started) and the exact
// command that finishes it. resume is that command without the run id
// ("signet deploy --resume").
func (g *globalOptions) haltExit(resume string, recap *workflows.Recap, err error) error {
	if err == nil || recap == nil || recap.Run == "" || recap.Status == workflows.StatusDone || recap.Status == "" {
		return g.workflowExit(err)
	}
	// The record may disagree with the fleet, or another run may hold the
	// lock: the existing hints say what to check before resuming.
	var se *workflows.SaveError
	var lost *workflows.LockLostError
	if errors.As(err, &se) || errors.As(err, &lost) {
		return g.workflowExit(err)
	}
	return withHint(err, haltHint(resume, recap))
}

// haltHint is "run R is recorded failed: 3 of 30 hosts done; failed:
// web004 (failed, left maintenance and drained); 26 not started. Once what
// failed on web004 is fixed and it answers (signet ping -I web004), finish
// the run with: signet deploy --resume R ...".
func haltHint(resume string, recap *workflows.Recap) string {
	done, waiting := 0, 0
	var failed []string
	marks := map[string][]string{}
	for _, m := range recap.OutOfRotation {
		marks[m.Host] = m.Marks
	}
	for _, h := range recap.Hosts {
		switch h.Status {
		case workflows.HostDone:
			done++
		case workflows.HostFailed, workflows.HostInterrupted, workflows.HostRunning:
			name := h.Host
			if m := marks[h.Host]; len(m) > 0 {
				name += " (" + h.Status + ", left " + strings.Join(m, " and ") + ")"
			} else {
				name += " (" + h.Status + ")"
			}
			failed = append(failed, name)
		default:
			waiting++
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "run %s is recorded %s: %d of %d hosts done", recap.Run, recap.Status, done, len(recap.Hosts))
	if len(failed) > 0 {
		fmt.Fprintf(&b, "; not finished: %s", strings.Join(failed, ", "))
	}
	if waiting > 0 {
		fmt.Fprintf(&b, "; %d not started", waiting)
	}
	b.WriteString(". ")
	var hosts []string
	for _, h := range recap.Hosts {
		if h.Status == workflows.HostFailed {
			hosts = append(hosts, h.Host)
		}
	}
	switch len(hosts) {
	case 0:
		b.WriteString("Finish")
	case 1:
		fmt.Fprintf(&b, "Once what failed on %s is fixed and it answers (signet ping -I %s), finish", hosts[0], hosts[0])
	default:
		fmt.Fprintf(&b, "Once what failed on %s is fixed and they answer (signet ping -I %s), finish",
			strings.Join(hosts, ", "), strings.Join(hosts, " -I "))
	}
	fmt.Fprintf(&b, " the run with: %s %s (it observes every host not done and runs only the steps each still needs)", resume, recap.Run)
	return b.String()
}
