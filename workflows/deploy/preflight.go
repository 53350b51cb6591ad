package deploy

import (
	"context"
	"fmt"
	"strings"

	"github.com/signetbus/signet/workflows"
)

// preflight compares the hosts the deploy expects (the discovered ones, or
// opts.Inventory) with those that answer a ping, and returns the hosts the
// run may work on. With hosts missing it refuses a run (not a plan)
// unless opts.AllowMissing; a plan shows them.
func (o *Options) preflight(ctx context.Context, discovered []workflows.Host, filter []string) (*workflows.Preflight, []workflows.Host, error) {
	source := "registry, hosts " + strings.Join(filter, " ")
	expected := make([]string, 0, len(discovered))
	for _, h := range discovered {
		expected = append(expected, h.Identity)
	}
	if o.Inventory != "" {
		inv, err := workflows.ReadInventory(o.Inventory)
		if err != nil {
			return nil, nil, err
		}
		source, expected = "inventory "+o.Inventory, inv
	}
	pf, err := workflows.RunPreflight(ctx, o.Caller, source, expected, discovered, filter, o.PreflightTimeout)
	if err != nil {
		return nil, nil, err
	}
	usable := pf.Usable(discovered)
	if len(pf.Missing) == 0 {
		return pf, usable, nil
	}
	pf.AllowMissing = o.AllowMissing
	if o.Plan && len(usable) > 0 {
		return pf, usable, nil
	}
	if !o.AllowMissing || len(usable) == 0 {
		return pf, nil, &workflows.MissingHostsError{Missing: pf.Missing, Expected: len(pf.Expected)}
	}
	if o.Log != nil {
		o.Log.Warn("deploy starts without missing hosts (--allow-missing)", "missing", strings.Join(pf.MissingNames(), ","), "user", o.User)
	}
	return pf, usable, nil
}

// missingNote is added to a run's summary when it starts without hosts.
func missingNote(pf *workflows.Preflight) string {
	if pf == nil || len(pf.Missing) == 0 {
		return ""
	}
	return fmt.Sprintf(" without %d missing hosts (--allow-missing: %s)", len(pf.Missing), strings.Join(pf.MissingNames(), ", "))
}
