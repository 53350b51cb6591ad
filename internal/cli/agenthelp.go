package cli

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/signetbus/signet/bus"
	"github.com/signetbus/signet/internal/policy"
	"github.com/signetbus/signet/plugins"
)

// checkRPCArgs explains a missing agent or action instead of cobra's
// "requires at least 2 arg(s)": the usage, and the actions of the agent
// as the plugins built into this signet declare them.
func checkRPCArgs(args []string) error {
	const usage = "usage: signet rpc AGENT ACTION [input=value...]"
	switch len(args) {
	case 0:
		return withHint(usageErrorf("rpc: missing the agent and the action\n%s\nagents built in: %s",
			usage, strings.Join(append(plugins.Names(), "rpcutil"), ", ")), "`signet plugins` lists the agents your fleet offers")
	case 1:
		msg := fmt.Sprintf("rpc %s: missing the action\n%s", args[0], usage)
		if actions := localActions(args[0]); len(actions) > 0 {
			msg += fmt.Sprintf("\nactions of %s: %s", args[0], strings.Join(actions, ", "))
		}
		return withHint(usageErrorf("%s", msg), fmt.Sprintf("`signet describe %s` shows each action's inputs", args[0]))
	}
	return nil
}

// localActions returns the actions an agent built into this signet
// declares; nil for an agent it does not know (an external plugin) or
// one that cannot be described without its host config.
func localActions(agent string) []string {
	if agent == "rpcutil" {
		return []string{"control_state", "ddl", "get_fact", "inventory", "ping"}
	}
	info, ok := plugins.Lookup(agent)
	if !ok {
		return nil
	}
	p, err := info.New(nil)
	if err != nil {
		return nil
	}
	if c, ok := p.(plugins.Closer); ok {
		defer c.Close()
	}
	return p.Describe().ActionNames()
}

// noMatchError is bus.ErrNoMatch (exit 3) said in the operator's terms.
type noMatchError struct{ msg string }

func (e *noMatchError) Error() string { return e.msg }
func (e *noMatchError) Unwrap() error { return bus.ErrNoMatch }

// explainNoMatch says why no host matched: no host offers the agent (with
// the nearest name that exists), or some do but the filter excludes them.
// It asks the registry; without one it can only compare with the agents
// built into this signet.
func explainNoMatch(ctx context.Context, s *session, q bus.Query) error {
	// The agents a host must offer: the one called and any -A.
	needed := []string{q.Agent}
	for _, a := range q.Filter.Agent {
		if !slices.Contains(needed, a) {
			needed = append(needed, a)
		}
	}
	known := append(plugins.Names(), "rpcutil")
	var offering map[string]int // nil without a registry
	if s.reg != nil {
		if regs, err := s.reg.List(ctx); err == nil && len(regs) > 0 {
			offering = map[string]int{}
			for _, r := range regs {
				for _, a := range r.Agents {
					offering[a]++
					if !slices.Contains(known, a) {
						known = append(known, a)
					}
				}
			}
		}
	}
	for _, agent := range needed {
		var msg string
		switch {
		case offering != nil && offering[agent] == 0:
			msg = fmt.Sprintf("no host offers agent %q", agent)
		case offering == nil && !slices.Contains(known, agent):
			msg = fmt.Sprintf("no host matched, and this signet knows no agent %q", agent)
		default:
			continue
		}
		if near := policy.Nearest(agent, known); near != "" {
			msg += fmt.Sprintf("; did you mean %q?", near)
		}
		return withHint(&noMatchError{msg}, "`signet plugins` lists the agents your fleet offers")
	}
	if offering != nil {
		return withHint(&noMatchError{fmt.Sprintf("no host matched: %d hosts offer agent %q but none matches the filter", offering[q.Agent], q.Agent)},
			"`signet inventory` shows each host's facts and classes; `signet discover` with fewer filters shows what matches")
	}
	return withHint(&noMatchError{"no host matched the filter"}, "`signet discover` with fewer filters shows what matches")
}

// identityFilter turns one -I value into what the filter takes: an exact
// name stays, /regex/ stays, a glob (web*, db?) becomes an anchored regex.
func identityFilter(id string) (string, error) {
	if isExactIdentity(id) || len(id) >= 2 && strings.HasPrefix(id, "/") && strings.HasSuffix(id, "/") {
		return id, nil
	}
	if strings.ContainsAny(id, "*?") && isExactIdentity(strings.NewReplacer("*", "x", "?", "x").Replace(id)) {
		re := regexp.QuoteMeta(id)
		re = strings.NewReplacer(`\*`, ".*", `\?`, ".").Replace(re)
		return "/^" + re + "$/", nil
	}
	return "", usageErrorf("-I %q: -I takes a host name, a glob such as 'web*' or a /regex/", id)
}
