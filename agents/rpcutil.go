package agents

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/signetbus/signet/bus"
	"github.com/signetbus/signet/bus/control"
	"github.com/signetbus/signet/plugins"
)

// rpcutil is the built-in agent every host has: ping, inventory,
// get_fact and ddl.
type rpcutil struct{ host *Host }

var _ plugins.Plugin = (*rpcutil)(nil)

func (r *rpcutil) Describe() plugins.DDL {
	return plugins.DDL{
		Name:        "rpcutil",
		Description: "Built-in agent: liveness, inventory and facts of the host",
		Actions: []plugins.Action{
			{Name: "ping", Description: "Answer with the host's time",
				Outputs: []plugins.Output{{Name: "time", Description: "host time, RFC 3339", Type: "string"}}},
			{Name: "inventory", Description: "Agents, facts, classes and version of the host",
				Outputs: []plugins.Output{
					{Name: "agents", Description: "enabled agents with their actions", Type: "list"},
					{Name: "facts", Description: "host facts", Type: "map"},
					{Name: "classes", Description: "host classes", Type: "list"},
					{Name: "version", Description: "signetd version", Type: "string"},
					{Name: "collective", Description: "collective", Type: "string"},
					{Name: "started", Description: "when signetd started", Type: "string"},
				}},
			{Name: "get_fact", Description: "Value of one fact",
				Inputs:  []plugins.Input{{Name: "fact", Description: "fact name", Type: plugins.TypeString, Required: true, Pattern: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}`}},
				Outputs: []plugins.Output{{Name: "fact", Type: "string"}, {Name: "value", Type: "string"}}},
			{Name: "ddl", Description: "Declaration (DDL) of one agent on this host",
				Inputs:  []plugins.Input{{Name: "agent", Description: "agent name", Type: plugins.TypeString, Required: true, Pattern: `[a-z][a-z0-9_]{0,63}`}},
				Outputs: []plugins.Output{{Name: "ddl", Type: "object"}}},
			{Name: control.StateAction, Description: "The signed revocation list and lock set this host applied (admins: see docs/security.md)",
				Outputs: []plugins.Output{
					{Name: control.KindRevocations, Description: "signed revocation list frame", Type: "string"},
					{Name: control.KindLocks, Description: "signed lock set frame", Type: "string"},
				}},
		},
	}
}

func (r *rpcutil) Run(ctx context.Context, req *plugins.Request) (*plugins.Result, error) {
	node := r.host.Node()
	switch req.Action {
	case "ping":
		return &plugins.Result{Summary: "pong", Data: map[string]any{"time": time.Now().UTC().Format(time.RFC3339Nano)}}, nil
	case "inventory":
		inv := &bus.Inventory{Facts: node.Facts, Classes: node.Classes, Version: r.host.version,
			Collective: r.host.collective, Started: r.host.started.UTC().Format(time.RFC3339)}
		for _, n := range slices.Sorted(maps.Keys(r.host.plugins)) {
			d := r.host.ddls[n]
			inv.Agents = append(inv.Agents, bus.InventoryAgent{Name: n, Description: d.Description, Actions: d.ActionNames()})
		}
		return &plugins.Result{Summary: fmt.Sprintf("%d agents, %d facts", len(inv.Agents), len(node.Facts)), Data: inv.Data()}, nil
	case "get_fact":
		name := req.Params.String("fact")
		v, ok := node.Facts[name]
		if !ok {
			return nil, fmt.Errorf("no fact %q on this host", name)
		}
		return &plugins.Result{Summary: name + "=" + v, Data: map[string]any{"fact": name, "value": v}}, nil
	case control.StateAction:
		return r.host.controlState(), nil
	case "ddl":
		d, ok := r.host.ddls[req.Params.String("agent")]
		if !ok {
			return nil, fmt.Errorf("agent %q is not enabled on this host", req.Params.String("agent"))
		}
		return &plugins.Result{Summary: d.Description, Data: map[string]any{"ddl": d}}, nil
	}
	return nil, fmt.Errorf("unknown action %q", req.Action)
}
