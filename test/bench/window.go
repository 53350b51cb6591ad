package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/signetbus/signet/workflows"
	"github.com/signetbus/signet/workflows/deploy"
	"github.com/signetbus/signet/workflows/fleettest"
)

// windowVsBatches runs the same rolling deploy of n hosts (batch size 3,
// three or six zones, or the zone rule off) over the in-memory fleet with every call taking step and
// the update of web1 taking slow more, once in lock-step batches and once
// as a sliding window, with and without the zone rule, and prints the
// wall time of each. The calls' own time is injected; the engine,
// scheduling and the deploy's step list are the real ones.
func windowVsBatches(n int, step, slow time.Duration) error {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("web%d", i+1)
	}
	app := func(strategy string, sameZone bool) (*deploy.App, error) {
		a, err := deploy.ParseApp(strings.NewReader(benchApp))
		if err != nil {
			return nil, err
		}
		a.BatchSize, a.Strategy, a.AllowSameZone = "3", strategy, sameZone
		return a, nil
	}
	fmt.Printf("batches vs sliding window: %d hosts, batch size 3 (max_unavailable 3), every call %s, web1's update %s slower:\n", n, step, slow)
	for _, c := range []struct {
		name     string
		zones    []string
		strategy string
		sameZone bool
	}{
		{"3 zones, batches", []string{"a", "b", "c"}, workflows.StrategyBatches, false},
		{"3 zones, window", []string{"a", "b", "c"}, workflows.StrategyWindow, false},
		{"6 zones, batches", []string{"a", "b", "c", "d", "e", "f"}, workflows.StrategyBatches, false},
		{"6 zones, window", []string{"a", "b", "c", "d", "e", "f"}, workflows.StrategyWindow, false},
		{"allow_same_zone, batches", []string{"a", "b", "c"}, workflows.StrategyBatches, true},
		{"allow_same_zone, window", []string{"a", "b", "c"}, workflows.StrategyWindow, true},
	} {
		f := fleettest.New(ids, c.zones)
		for _, id := range ids {
			f.Nodes[id].Facts["env"] = "lab"
		}
		f.Hook = func(ctx context.Context, host string, call workflows.Call) {
			d := step
			if host == "web1" && call.Agent == "package" && call.Action == "update" {
				d += slow
			}
			select {
			case <-time.After(d):
			case <-ctx.Done():
			}
		}
		a, err := app(c.strategy, c.sameZone)
		if err != nil {
			return err
		}
		t0 := time.Now()
		recap, err := deploy.Run(context.Background(), nil, deploy.Options{App: a, Version: "1.4.2", Env: "lab", Yes: true,
			Output: io.Discard, Caller: f, Store: workflows.NewMemStore(), User: "bench"})
		if err != nil {
			return fmt.Errorf("%s: %w", c.name, err)
		}
		fmt.Printf("  %-26s %6.1f s  (at most %d out of rotation at once)\n", c.name+":", time.Since(t0).Seconds(), recap.Limits.PeakUnavailable)
	}
	return nil
}
