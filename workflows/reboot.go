package workflows

import (
	"context"
	"fmt"
	"time"
)

// BootWatcher is a Caller that knows each host's boot id (from the fleet
// registry, where signetd publishes it) and can wait for it to change:
// what a step with wait_boot needs. buscaller.Caller and fleettest.Fleet
// implement it.
type BootWatcher interface {
	// BootID returns host's registered boot id; "" when the host is
	// registered without one or not registered.
	BootID(ctx context.Context, host string) (string, error)
	// WaitBoot waits until host is registered with a boot id that is
	// neither empty nor old and returns it, or returns ctx's error.
	WaitBoot(ctx context.Context, host, old string) (string, error)
}

// maxWaitBoot bounds Step.WaitBoot.
const maxWaitBoot = 24 * time.Hour

// reboot performs a step with WaitBoot: it reads the host's boot id, makes
// the call (which reboots the host) and waits until the host registers
// again with a new boot id, or fails at WaitBoot. A host that goes down
// before it answers the call is not a failure: the reply may be lost with
// it. An answer that says the reboot failed is.
func (e *Engine) reboot(ctx context.Context, host string, step Step, vars map[string]string, silent *Silent) (results []Result, skipped []string, changed bool, summary, detail string) {
	bw, ok := e.Caller.(BootWatcher)
	if !ok {
		return nil, nil, false, "", "wait_boot: this caller cannot read boot ids from the fleet registry"
	}
	before, err := bw.BootID(ctx, host)
	if err != nil {
		return nil, nil, false, "", "wait_boot: read the boot id before the reboot: " + err.Error()
	}
	if before == "" {
		return nil, nil, false, "", "wait_boot: " + host + " has no boot id in the fleet registry (a signetd too old to publish one, or not registered): a reboot could not be told from a reconnect, so it was not started"
	}
	results, changed, summary, detail = e.call(ctx, host, step, vars, silent, &skipped)
	wentDown := false
	for _, r := range results {
		wentDown = wentDown || r.Host == host && r.NoResponse
	}
	if detail != "" && !wentDown {
		return results, skipped, changed, summary, detail // the reboot itself failed
	}
	start := time.Now()
	wctx, cancel := context.WithTimeout(ctx, step.WaitBoot)
	after, err := bw.WaitBoot(wctx, host, before)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return results, skipped, changed, summary, "interrupted while waiting for " + host + " to come back: " + ctx.Err().Error()
		}
		return results, skipped, changed, summary, fmt.Sprintf("%s did not register again with a new boot id within %s (boot id before the reboot: %s)", host, step.WaitBoot, before)
	}
	// The host is back: an answer lost with the reboot is not a silence.
	for i := range results {
		if results[i].Host == host && results[i].NoResponse {
			results[i] = Result{Host: host, OK: true, Changed: true}
		}
	}
	return results, skipped, true, fmt.Sprintf("rebooted: back after %s with boot id %s (was %s)", time.Since(start).Round(100*time.Millisecond), after, before), ""
}
