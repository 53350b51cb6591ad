package cli

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/signetbus/signet/workflows"
	"github.com/signetbus/signet/workflows/deploy"
)

// rolloutFlags override the app file's canary and gates, and decide on a
// waiting canary (docs/workflows.md, "Canary and bake", "Metric gates").
type rolloutFlags struct {
	canary                        string
	bake                          time.Duration
	promoteMode                   string
	gatesFile                     string
	gateInterval, inconclusiveFor time.Duration
	promote, abort                string
}

func (r *rolloutFlags) register(c *cobra.Command) {
	f := c.Flags()
	f.StringVar(&r.canary, "canary", "", "canary hosts deployed first and baked: host,host or per-zone (one per zone), or none")
	f.DurationVar(&r.bake, "bake", 0, "how long the canary is watched before it may be promoted (e.g. 10m)")
	f.StringVar(&r.promoteMode, "canary-promote", "", "auto (promote once the bake passed) or manual (wait for --promote RUN)")
	f.StringVar(&r.gatesFile, "gates", "", "YAML file of metric gates replacing the app file's gates: section")
	f.DurationVar(&r.gateInterval, "gate-interval", 0, "wait between two checks of the gates")
	f.DurationVar(&r.inconclusiveFor, "gate-inconclusive-for", 0, "how long gates may stay inconclusive (no data) before the run halts, resumable")
	f.StringVar(&r.promote, "promote", "", "promote the waiting canary of run RUN: the rest of the fleet follows")
	f.StringVar(&r.abort, "abort", "", "abort the waiting canary of run RUN: no other host is touched")
}

func (r *rolloutFlags) rollout() deploy.Rollout {
	ro := deploy.Rollout{Bake: r.bake, Promote: r.promoteMode, GatesFile: r.gatesFile, GateInterval: r.gateInterval, InconclusiveFor: r.inconclusiveFor}
	if r.canary != "" {
		for _, h := range strings.Split(r.canary, ",") {
			if h = strings.TrimSpace(h); h != "" {
				ro.Canary = append(ro.Canary, h)
			}
		}
	}
	return ro
}

// decision returns the --promote or --abort asked for, if any.
func (r *rolloutFlags) decision() (deploy.Decision, bool, error) {
	switch {
	case r.promote != "" && r.abort != "":
		return deploy.Decision{}, false, usageErrorf("--promote and --abort exclude each other")
	case r.promote != "":
		return deploy.Decision{Run: r.promote, Decision: workflows.DecisionPromote}, true, nil
	case r.abort != "":
		return deploy.Decision{Run: r.abort, Decision: workflows.DecisionAbort}, true, nil
	}
	return deploy.Decision{}, false, nil
}

// decided turns the result of --promote or --abort into the command's:
// a decision the waiting client acts on is a success.
func (g *globalOptions) decided(err error) error {
	var wc *deploy.WaitingClientError
	if errors.As(err, &wc) {
		fmt.Fprintln(g.io.Err, wc.Error())
		return nil
	}
	if errors.Is(err, workflows.ErrNotWaiting) {
		return withHint(err, "look at the run with `signet deploy --resume RUN --plan`; only a canary that finished its bake and waits can be promoted or aborted")
	}
	var ae *workflows.CanaryAbortedError
	if errors.As(err, &ae) {
		return err
	}
	return g.workflowExit(err)
}
