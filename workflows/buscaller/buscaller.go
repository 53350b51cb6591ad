// Package buscaller runs workflow steps over the signed bus: it implements
// workflows.Caller with a bus.Client, so every step of a deploy is a signed,
// verified, policy-checked and audited request like any other.
package buscaller

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/signetbus/signet/bus"
	"github.com/signetbus/signet/workflows"
)

// Caller adapts a bus.Client to workflows.Caller.
type Caller struct {
	Client *bus.Client
	// Registry, when set, answers Discover without a broadcast.
	Registry *bus.Registry
	// Approval, when set, is carried by every call: an approved plan
	// (see PlanSubject) under the two-person rule. A plan tree
	// (bus.SubjectPlanTree) is carried as its header and each call's own
	// step with its proof (approval.go).
	Approval *bus.ApprovalProof

	treeMu  sync.Mutex
	tree    *bus.PlanTree
	treeFor *bus.ApprovalProof
}

var _ workflows.Caller = (*Caller)(nil)

// ParseFilter turns workflow filter expressions into a bus filter:
// "agent=NAME", "class=NAME" and "identity=NAME" (exact or /regex/) select
// on those; anything else is a fact expression.
func ParseFilter(exprs []string) (bus.Filter, error) {
	var f bus.Filter
	for _, e := range exprs {
		k, v, ok := strings.Cut(e, "=")
		switch {
		case ok && k == "agent":
			f.Agent = append(f.Agent, v)
		case ok && k == "class":
			f.Class = append(f.Class, v)
		case ok && k == "identity":
			f.Identity = append(f.Identity, v)
		default:
			f.Fact = append(f.Fact, e)
		}
	}
	if _, err := f.Compile(); err != nil {
		return f, err
	}
	return f, nil
}

// Call runs one action, directly on c.Hosts or broadcast to c.Filter.
func (b *Caller) Call(ctx context.Context, c workflows.Call) ([]workflows.Result, error) {
	q := bus.Query{Agent: c.Agent, Action: c.Action, Params: c.Params, Timeout: c.Timeout,
		Provenance: workflows.ProvenanceFrom(ctx)}
	if len(c.Hosts) > 0 {
		q.Targets = c.Hosts
	} else {
		f, err := ParseFilter(c.Filter)
		if err != nil {
			return nil, err
		}
		q.Filter = f
	}
	a, err := b.approvalFor(q)
	if err != nil {
		return nil, err
	}
	q.Approval = a
	out, err := b.Client.Do(ctx, q)
	if errors.Is(err, bus.ErrNoMatch) {
		return nil, nil
	}
	if err != nil && out == nil {
		return nil, fmt.Errorf("%s.%s: %w", c.Agent, c.Action, err)
	}
	res := make([]workflows.Result, 0, len(out.Results))
	for _, r := range out.Results {
		wr := workflows.Result{Host: r.Identity, OK: r.Status == bus.ResultOK, Error: r.Error, NoResponse: r.Status == bus.ResultNoResponse}
		if r.Reply != nil {
			wr.Changed, wr.Summary, wr.Data = r.Reply.Changed, r.Reply.Summary, r.Reply.Data
		}
		if !wr.OK && !wr.NoResponse && wr.Error == "" {
			wr.Error = string(r.Status)
		}
		if r.Status == bus.ResultForged || r.Status == bus.ResultUnknownHost {
			wr.Error = string(r.Status) + ": " + r.Error
		}
		res = append(res, wr)
	}
	return res, err
}

// Discover lists the hosts matching the filter with their facts: from the
// registry when there is one, otherwise by a signed inventory broadcast.
func (b *Caller) Discover(ctx context.Context, filter []string) ([]workflows.Host, error) {
	f, err := ParseFilter(filter)
	if err != nil {
		return nil, err
	}
	m, _ := f.Compile()
	var hosts []workflows.Host
	if b.Registry != nil {
		if err := b.Registry.Check(ctx); err != nil {
			return nil, err
		}
		regs, err := b.Registry.List(ctx)
		if err != nil {
			return nil, err
		}
		for _, r := range regs {
			if m.Match(r.Node()) {
				hosts = append(hosts, workflows.Host{Identity: r.Identity, Facts: r.Facts, Agents: r.Agents})
			}
		}
		if len(regs) > 0 {
			return hosts, nil
		}
	}
	out, err := b.Client.Do(ctx, bus.Query{Agent: "rpcutil", Action: "inventory", Filter: f})
	if errors.Is(err, bus.ErrNoMatch) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	for _, r := range out.Results {
		if r.Status != bus.ResultOK {
			continue
		}
		inv, err := bus.ParseInventory(r.Reply.Data)
		if err != nil {
			return nil, fmt.Errorf("discover: %s: %w", r.Identity, err)
		}
		hosts = append(hosts, workflows.Host{Identity: r.Identity, Facts: inv.Facts, Agents: inv.AgentNames()})
	}
	sort.Slice(hosts, func(i, j int) bool { return hosts[i].Identity < hosts[j].Identity })
	return hosts, nil
}
