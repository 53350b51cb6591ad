package workflows

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/signetbus/signet/internal/redact"
)

// FreshInstallVar is the host variable a workflow's Prepare sets to
// "true" when the host had no version installed before the run: such a
// host has nothing to roll back to, and the recap says so instead of
// removing the package.
const FreshInstallVar = "fresh_install"

// ApprovedPreviousVar is the host variable a workflow's Prepare sets when
// the run is under an approved plan that holds its rollback: the version
// the plan rolls the host back to ("" for none: the host had nothing
// installed when the plan was read). A host whose previous version is
// another is not rolled back: that rollback is not approved, and the
// hosts would refuse it.
const ApprovedPreviousVar = "approved_previous"

// rollbackReason is the reason every rollback request carries in its
// signed provenance: the run's first failure.
func (r *run) rollbackReason() string {
	r.firstMu.Lock()
	defer r.firstMu.Unlock()
	if len(r.failures) == 0 {
		if r.gateErr != nil {
			return "rollback of run " + r.st.ID + " after " + r.gateErr.Error()
		}
		return "rollback of run " + r.st.ID
	}
	return "rollback of run " + r.st.ID + " after " + r.failures[0].Error()
}

// rollbackCtx is ctx with the run's provenance and the rollback's reason.
func (r *run) rollbackCtx(ctx context.Context, reason string) context.Context {
	r.mu.Lock()
	p := r.st.provenance(reasonText(reason))
	r.mu.Unlock()
	return WithProvenance(ctx, p)
}

// maxReason bounds a rollback's reason below what a host accepts
// (bus.Provenance.Check).
const maxReason = 1000

// reasonText makes a failure detail fit to travel as a provenance
// reason, which every host checks: credentials redacted, control
// characters (a plugin's error may hold newlines) turned into spaces, and
// cut to maxReason bytes on a rune boundary. A reason the hosts refuse
// would make the rollback itself fail.
func reasonText(s string) string {
	s = redact.String(s)
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == utf8.RuneError {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(s, " "))
	if len(s) <= maxReason {
		return s
	}
	cut := maxReason - 3
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

// noPrevious says why host cannot be rolled back, "" when it can: the
// version it had before the run is not recorded (for a fresh install, it
// had none), or it is not the one the approved plan rolls it back to.
// r.mu must be held.
func (r *run) noPrevious(host string, hs *HostState) string {
	if r.st.Vars["version"] == "" {
		return ""
	}
	if prev := hs.Vars["previous"]; prev != "" {
		approved, underPlan := hs.Vars[ApprovedPreviousVar]
		if !underPlan || approved == prev {
			return ""
		}
		if approved == "" {
			return fmt.Sprintf("not rolled back: %s had no version installed when the approved plan was read, the run found %s on it: "+
				"a rollback to %s is not approved", host, prev, prev)
		}
		return fmt.Sprintf("not rolled back: the approved plan rolls %s back to %s, the version read when the plan was made, "+
			"but the run found %s on it: a rollback to %s is not approved", host, approved, prev, prev)
	}
	if hs.Vars[FreshInstallVar] == "true" {
		return "not rolled back: no previous version (fresh install of " + r.st.Vars["version"] + ")"
	}
	return "not rolled back: the previous version is unknown"
}

// rollbackFailed runs the rollback on a host that just failed and records
// the outcome on the host and in se.
func (r *run) rollbackFailed(ctx context.Context, batch int, host string, hs *HostState, se *StepError) string {
	r.mu.Lock()
	why := r.noPrevious(host, hs)
	r.mu.Unlock()
	if why != "" {
		se.Rollback = why + "; host held"
		r.mu.Lock()
		hs.Rollback = se.Rollback
		r.mu.Unlock()
		return HostFailed
	}
	ctx = r.rollbackCtx(ctx, "rollback of run "+r.st.ID+" after "+se.Host+": "+se.Step+": "+se.Detail)
	status := r.rollback(ctx, batch, host, hs, se)
	r.mu.Lock()
	hs.Rollback = r.rollbackText(hs, status, se.Rollback)
	r.mu.Unlock()
	return status
}

// rollbackText is the recap's account of a host's rollback; r.mu must be
// held.
func (r *run) rollbackText(hs *HostState, status, detail string) string {
	if status == HostRolledBack && hs.Vars["previous"] != "" {
		return fmt.Sprintf("rolled back from %s to %s", r.st.Vars["version"], hs.Vars["previous"])
	}
	return detail
}

// rollbackTouched is on_failure rollback once the run stopped on its
// failures: after the hosts in progress finished, every host the run
// touched (took out of rotation) and that is not already rolled back is
// restored to the version it had before, with the workflow's rollback
// steps (for a deploy: drain, stop, install the previous version, check,
// start, health, enable), under the same capacity caps as the run. A host
// goes back into rotation only through those steps, after its health
// check. Nothing runs after a hard cancel, a soft stop, a lost lock or
// failures within the budget.
func (r *run) rollbackTouched(ctx context.Context, status string) {
	if status != StatusFailed || r.job.Workflow.OnFailure != OnFailureRollback || ctx.Err() != nil {
		return
	}
	// A failed gate, a canary's failed bake or an aborted canary ends the
	// run failed as surely as a spent failure budget: the version already
	// deployed is what the gate or the bake judged bad.
	r.firstMu.Lock()
	judged := r.gateErr != nil
	spent := (len(r.failures) > r.lim.MaxFailures || judged) && r.lockErr == nil
	r.firstMu.Unlock()
	if !spent {
		return
	}
	type todo struct {
		host  string
		batch int
	}
	var hosts []todo
	r.mu.Lock()
	for bi, b := range r.st.Batches {
		for _, h := range b {
			hs := r.st.Hosts[h]
			if !hs.Touched || hs.Rollback != "" {
				continue
			}
			switch hs.Status {
			case HostDone, HostStopped:
			case HostFailed:
				// A host that failed a step had its own rollback then
				// (hs.Rollback says how); one failed by the canary's bake
				// has not.
				if !judged {
					continue
				}
			default:
				continue
			}
			if why := r.noPrevious(h, hs); why != "" {
				hs.Rollback = why + "; left at " + r.st.Vars["version"]
				r.emit(Event{Type: EventHostDone, Batch: bi + 1, Host: h, Status: hs.Status, Summary: hs.Rollback})
				continue
			}
			hosts = append(hosts, todo{h, bi + 1})
		}
	}
	r.save(ctx)
	r.mu.Unlock()
	if len(hosts) == 0 {
		return
	}
	rctx := r.rollbackCtx(ctx, r.rollbackReason())
	// The failed hosts were halted for the budget; the rollback itself
	// must run, so only a cancel or a lost lock stops it.
	stop := func() bool { return ctx.Err() != nil || r.lockLost() }
	var wg sync.WaitGroup
	for _, t := range hosts {
		ok, capErr := r.slots.acquire(stop, t.host)
		if !ok {
			r.mu.Lock()
			hs := r.st.Hosts[t.host]
			hs.Rollback = "rollback not started: the run was interrupted"
			if capErr != nil {
				hs.Rollback = "rollback not started: " + capErr.Error()
			}
			r.save(ctx)
			r.emit(Event{Type: EventHostDone, Batch: t.batch, Host: t.host, Status: hs.Status, Error: hs.Rollback})
			r.mu.Unlock()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.rollbackHost(rctx, t.batch, t.host)
			r.mu.Lock()
			out := leftOut(r.st.Hosts[t.host])
			r.mu.Unlock()
			r.slots.release(t.host, out)
		}()
	}
	wg.Wait()
}

func (r *run) lockLost() bool {
	r.firstMu.Lock()
	defer r.firstMu.Unlock()
	return r.lockErr != nil
}

// rollbackHost restores one touched host that did not fail.
func (r *run) rollbackHost(ctx context.Context, batch int, host string) {
	start := time.Now()
	r.mu.Lock()
	hs := r.st.Hosts[host]
	r.mu.Unlock()
	se := &StepError{Host: host}
	status := r.rollback(ctx, batch, host, hs, se)
	r.mu.Lock()
	defer r.mu.Unlock()
	hs.Status = status
	hs.Rollback = r.rollbackText(hs, status, se.Rollback)
	ev := Event{Type: EventHostDone, Batch: batch, Host: host, Status: status, ElapsedMS: time.Since(start).Milliseconds()}
	if status == HostRolledBack {
		ev.Summary = hs.Rollback
	} else {
		ev.Error = host + ": " + hs.Rollback
		hs.Error = ev.Error
	}
	r.save(ctx)
	r.emit(ev)
}

// writeRollback lists the hosts of an on_failure rollback in the text
// recap.
func (r *Recap) writeRollback(w io.Writer) {
	head := false
	for _, h := range r.Hosts {
		if h.Rollback == "" {
			continue
		}
		if !head {
			fmt.Fprintln(w, "rollback:")
			head = true
		}
		fmt.Fprintf(w, "  %s: %s\n", h.Host, h.Rollback)
	}
}

// RollbackVars returns the variables a host's rollback steps are expanded
// with, from those of its deploy steps (the run's and the host's): the
// plan of an approved rollback is expanded as the rollback will be.
func RollbackVars(vars map[string]string) map[string]string {
	out := cloneVars(vars)
	rollbackVars(out)
	return out
}

// rollbackVars turns a host's variables into those of its rollback:
// {{version}} is the version it had before ({{previous}}), and
// {{target_version}} the version that failed. Every other previous_NAME
// variable replaces NAME the same way (previous_sha256 is the digest of
// the previous version's artifact).
func rollbackVars(vars map[string]string) {
	vars["target_version"] = vars["version"]
	if p := vars["previous"]; p != "" {
		vars["version"] = p
	}
	set := map[string]string{}
	for k, v := range vars {
		if name, ok := strings.CutPrefix(k, "previous_"); ok && name != "" && name != "version" {
			set[name] = v
		}
	}
	for k, v := range set {
		vars[k] = v
	}
}
