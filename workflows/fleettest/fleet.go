// Package fleettest simulates a fleet in memory behind workflows.Caller:
// per-host installed package version, service state, maintenance and, on
// separate load balancer hosts, the HAProxy server state of every host. The
// engine and deploy tests drive it; the end-to-end tests run the same
// engine over the real bus instead.
package fleettest

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/signetbus/signet/workflows"
)

// Node is one simulated host.
type Node struct {
	Facts  map[string]string
	Agents []string
	// Package state of the app package.
	Installed, Previous string
	// Held makes update a no-op and check_version fail with "apt: held
	// package", as a dpkg hold does.
	Held bool
	// Running is the service state; Maintenance the monitoring state.
	Running, Maintenance bool
	// Unhealthy makes the health check fail even when the version is right.
	Unhealthy bool
	// BootID is the boot id the host is registered with ("1" at first); a
	// test simulates a reboot by changing it (boot.go).
	BootID string
}

// Fleet is an in-memory fleet. Zero value is not usable; use New.
type Fleet struct {
	mu    sync.Mutex
	Nodes map[string]*Node
	// Drained is the HAProxy view: server name -> drained, shared by every
	// load balancer in the fleet.
	Drained map[string]bool
	// Available lists the versions the repository offers.
	Available []string
	// Silent lists "host agent.action" calls that get no answer.
	Silent map[string]bool
	// ReportSilent makes a broadcast report its silent matching hosts as
	// no response, as the bus does when the registry lists the hosts a
	// broadcast expects; without it they are simply absent.
	ReportSilent bool
	// Fail lists "host agent.action" calls that fail with the given error.
	Fail map[string]string
	// Hook runs before each call reaches a host (once per targeted host,
	// once per broadcast with host ""); tests use it to cancel or stop.
	Hook func(ctx context.Context, host string, c workflows.Call)
	// Handlers answer custom agents: "agent.action" -> handler.
	Handlers map[string]func(host string, n *Node, params map[string]any) workflows.Result
	log      []string
}

// New returns a fleet of app hosts and two load balancers lb1 and lb2
// (agent haproxy, fact lb=prod). Each app host has facts env=prod and zone
// from zones (cycled) and runs version 1.4.1 of package "app", in rotation.
func New(hosts []string, zones []string) *Fleet {
	f := &Fleet{Nodes: map[string]*Node{}, Drained: map[string]bool{}, Available: []string{"1.4.1", "1.4.2"},
		Silent: map[string]bool{}, Fail: map[string]string{}, Handlers: map[string]func(string, *Node, map[string]any) workflows.Result{}}
	for i, h := range hosts {
		f.Nodes[h] = &Node{Facts: map[string]string{"env": "prod", "zone": zones[i%len(zones)], "role": "app"},
			Agents: []string{"package", "service", "maintenance", "health"}, Installed: "1.4.1", Previous: "1.4.0", Running: true, BootID: "1"}
	}
	for _, lb := range []string{"lb1", "lb2"} {
		f.Nodes[lb] = &Node{Facts: map[string]string{"lb": "prod", "role": "lb"}, Agents: []string{"haproxy"}}
	}
	return f
}

// Log returns the calls made so far as "host agent.action" lines (for a
// broadcast, one line per answering host).
func (f *Fleet) Log() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.log)
}

// HostLog returns the "agent.action" calls made for host, broadcasts made
// on its behalf (server param) included.
func (f *Fleet) HostLog(host string) []string {
	var out []string
	for _, l := range f.Log() {
		h, call, _ := strings.Cut(l, " ")
		if h == host {
			out = append(out, call)
		} else if strings.HasPrefix(call, "haproxy.") && strings.HasSuffix(call, "@"+host) && h == "lb1" {
			out = append(out, strings.TrimSuffix(call, "@"+host))
		}
	}
	return out
}

// Node returns a copy of a host's state.
func (f *Fleet) Node(host string) Node {
	f.mu.Lock()
	defer f.mu.Unlock()
	return *f.Nodes[host]
}

// IsDrained reports the HAProxy state of server host.
func (f *Fleet) IsDrained(host string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.Drained[host]
}

// Update changes a host under the lock.
func (f *Fleet) Update(fn func(f *Fleet)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *Fleet) match(id string, n *Node, filter []string) bool {
	for _, e := range filter {
		k, v, ok := strings.Cut(e, "=")
		if !ok {
			return false
		}
		if k == "agent" {
			if !slices.Contains(n.Agents, v) {
				return false
			}
			continue
		}
		if k == "identity" {
			if id != v {
				return false
			}
			continue
		}
		if n.Facts[k] != v {
			return false
		}
	}
	return true
}

// Discover implements workflows.Caller.
func (f *Fleet) Discover(ctx context.Context, filter []string) ([]workflows.Host, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []workflows.Host
	for id, n := range f.Nodes {
		if f.match(id, n, filter) {
			out = append(out, workflows.Host{Identity: id, Facts: n.Facts, Agents: n.Agents})
		}
	}
	slices.SortFunc(out, func(a, b workflows.Host) int { return strings.Compare(a.Identity, b.Identity) })
	return out, nil
}

// Call implements workflows.Caller.
func (f *Fleet) Call(ctx context.Context, c workflows.Call) ([]workflows.Result, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var targets []string
	if len(c.Hosts) > 0 {
		targets = c.Hosts
	} else {
		f.mu.Lock()
		for id, n := range f.Nodes {
			if slices.Contains(n.Agents, c.Agent) && f.match(id, n, c.Filter) {
				targets = append(targets, id)
			}
		}
		f.mu.Unlock()
		slices.Sort(targets)
		if f.Hook != nil {
			f.Hook(ctx, "", c)
		}
	}
	var out []workflows.Result
	for _, h := range targets {
		if len(c.Hosts) > 0 && f.Hook != nil {
			f.Hook(ctx, h, c)
		}
		if err := ctx.Err(); err != nil {
			return out, err
		}
		key := h + " " + c.Agent + "." + c.Action
		f.mu.Lock()
		n := f.Nodes[h]
		if n == nil || f.Silent[key] {
			f.mu.Unlock()
			if len(c.Hosts) > 0 || (f.ReportSilent && n != nil) {
				out = append(out, workflows.Result{Host: h, NoResponse: true})
			}
			continue
		}
		line := key
		if c.Agent == "haproxy" {
			line += fmt.Sprintf("@%v", c.Params["server"])
		}
		if c.Agent != "rpcutil" { // the preflight ping is not a change
			f.log = append(f.log, line)
		}
		var r workflows.Result
		if msg, ok := f.Fail[key]; ok {
			r = workflows.Result{Error: msg}
		} else {
			r = f.run(h, n, c)
		}
		f.mu.Unlock()
		r.Host = h
		r.OK = r.Error == ""
		out = append(out, r)
	}
	return out, nil
}

func str(p map[string]any, k string) string { s, _ := p[k].(string); return s }

// run answers one call; f.mu is held.
func (f *Fleet) run(h string, n *Node, c workflows.Call) workflows.Result {
	p := c.Params
	switch c.Agent + "." + c.Action {
	case "rpcutil.ping":
		return workflows.Result{Summary: "pong"}
	case "package.update":
		v := str(p, "version")
		if n.Held {
			return workflows.Result{Summary: fmt.Sprintf("%s %s held", str(p, "package"), n.Installed), Data: pkgData(n)}
		}
		if !slices.Contains(f.Available, v) {
			return workflows.Result{Error: fmt.Sprintf("package %s: version %s is not available", str(p, "package"), v)}
		}
		if n.Installed == v {
			return workflows.Result{Summary: fmt.Sprintf("%s %s", str(p, "package"), v), Data: pkgData(n)}
		}
		n.Previous, n.Installed = n.Installed, v
		return workflows.Result{Changed: true, Summary: fmt.Sprintf("%s %s -> %s", str(p, "package"), n.Previous, v), Data: pkgData(n)}
	case "package.check_version":
		v := str(p, "version")
		if n.Installed != v {
			msg := fmt.Sprintf("package %s: want %s, installed %s", str(p, "package"), v, n.Installed)
			if n.Held {
				msg += " (apt: held package)"
			}
			return workflows.Result{Error: msg}
		}
		return workflows.Result{Summary: "version ok", Data: pkgData(n)}
	case "package.status":
		return workflows.Result{Data: pkgData(n)}
	case "service.stop", "service.start":
		want := c.Action == "start"
		changed := n.Running != want
		n.Running = want
		return workflows.Result{Changed: changed, Summary: str(p, "service") + " " + svcState(n), Data: map[string]any{"state": svcState(n), "active": n.Running}}
	case "service.status":
		return workflows.Result{Data: map[string]any{"state": svcState(n), "active": n.Running}}
	case "maintenance.start", "maintenance.end":
		want := c.Action == "start"
		changed := n.Maintenance != want
		n.Maintenance = want
		return workflows.Result{Changed: changed, Data: map[string]any{"active": n.Maintenance}}
	case "maintenance.status":
		return workflows.Result{Data: map[string]any{"active": n.Maintenance}}
	case "health.http":
		want := str(p, "contains")
		if !n.Running {
			return workflows.Result{Error: fmt.Sprintf("health: GET %s: connection refused", str(p, "url"))}
		}
		if n.Unhealthy || (want != "" && want != n.Installed) {
			return workflows.Result{Error: fmt.Sprintf("health: GET %s: want body containing %q, found %q", str(p, "url"), want, n.Installed)}
		}
		return workflows.Result{Summary: "200 OK"}
	case "haproxy.drain", "haproxy.enable", "haproxy.status":
		server := str(p, "server")
		known := false
		for id, x := range f.Nodes {
			known = known || (id == server && x.Facts["role"] == "app")
		}
		matched := 0
		if known {
			matched = 1
		}
		changed := false
		switch c.Action {
		case "drain":
			changed = !f.Drained[server]
			f.Drained[server] = known
		case "enable":
			changed = f.Drained[server]
			f.Drained[server] = false
		}
		status := "UP"
		if f.Drained[server] {
			status = "DRAIN"
		}
		var servers []any
		if known {
			servers = []any{map[string]any{"instance": "main", "backend": str(p, "backend"), "server": server, "status": status, "weight": int64(1), "sessions": int64(0)}}
		}
		if c.Action != "status" && !known {
			return workflows.Result{Error: fmt.Sprintf("haproxy: no server %s in backend %s", server, str(p, "backend"))}
		}
		return workflows.Result{Changed: changed, Data: map[string]any{"servers": servers, "matched": int64(matched)}}
	}
	if hnd, ok := f.Handlers[c.Agent+"."+c.Action]; ok {
		return hnd(h, n, p)
	}
	return workflows.Result{Error: fmt.Sprintf("unknown action %s.%s", c.Agent, c.Action)}
}

func svcState(n *Node) string {
	if n.Running {
		return "running"
	}
	return "stopped"
}

func pkgData(n *Node) map[string]any {
	return map[string]any{"installed": n.Installed != "", "version": n.Installed, "previous": n.Previous}
}
