package cli

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/signetbus/signet/bus"
	"github.com/signetbus/signet/internal/redact"
)

func newPingCmd(g *globalOptions) *cobra.Command {
	q := &queryFlags{}
	c := &cobra.Command{
		Use:   "ping",
		Short: "Ping matching hosts with a signed request",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o, err := g.run(cmd.Context(), q, "rpcutil", "ping", nil)
			if !keepPartial(o, err) {
				return err
			}
			p := g.printer()
			if p.json {
				if err := p.jsonValue(jsonOutcome(o)); err != nil {
					return err
				}
			} else {
				rows := [][]string{}
				for _, r := range o.Results {
					msg := r.Error
					if r.Status == bus.ResultOK {
						msg = fmt.Sprintf("%.1f ms", ms(r.Elapsed))
					}
					rows = append(rows, []string{r.Identity, string(r.Status), redact.String(msg)})
				}
				p.table([]string{"HOST", "STATUS", "TIME"}, rows)
			}
			summary(g.io.Err, o)
			return outcomeExit(o, err)
		},
	}
	q.register(c)
	return c
}

func newDiscoverCmd(g *globalOptions) *cobra.Command {
	q := &queryFlags{}
	c := &cobra.Command{
		Use:     "discover",
		Aliases: []string{"find"},
		Short:   "List the hosts that match a filter and answer a signed ping (mco find)",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o, err := g.run(cmd.Context(), q, "rpcutil", "ping", nil)
			if !keepPartial(o, err) {
				return err
			}
			var ids []string
			for _, r := range o.Results {
				if r.Status == bus.ResultOK {
					ids = append(ids, r.Identity)
				}
			}
			p := g.printer()
			if p.json {
				if ids == nil {
					ids = []string{}
				}
				return p.jsonValue(map[string]any{"hosts": ids})
			}
			for _, id := range ids {
				fmt.Fprintln(g.io.Out, id)
			}
			fmt.Fprintf(g.io.Err, "%d hosts discovered\n", len(ids))
			return outcomeExit(o, err)
		},
	}
	q.register(c)
	return c
}

func newFactsCmd(g *globalOptions) *cobra.Command {
	q := &queryFlags{}
	c := &cobra.Command{
		Use:   "facts FACT",
		Short: "Show how a fact's values are spread across matching hosts",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o, err := g.run(cmd.Context(), q, "rpcutil", "get_fact", map[string]any{"fact": args[0]})
			if !keepPartial(o, err) {
				return err
			}
			byValue := map[string][]string{}
			for _, r := range o.Results {
				if r.Status == bus.ResultOK {
					v, _ := r.Reply.Data["value"].(string)
					byValue[v] = append(byValue[v], r.Identity)
				}
			}
			values := slices.Sorted(maps.Keys(byValue))
			p := g.printer()
			if p.json {
				return p.jsonValue(map[string]any{"fact": args[0], "values": byValue, "summary": jsonOutcome(o).Summary})
			}
			rows := [][]string{}
			for _, v := range values {
				hosts := byValue[v]
				sort.Strings(hosts)
				rows = append(rows, []string{v, fmt.Sprint(len(hosts)), strings.Join(hosts, ",")})
			}
			p.table([]string{"VALUE", "HOSTS", "IDENTITIES"}, rows)
			summary(g.io.Err, o)
			return outcomeExit(o, err)
		},
	}
	q.register(c)
	return c
}

func newInventoryCmd(g *globalOptions) *cobra.Command {
	q := &queryFlags{}
	c := &cobra.Command{
		Use:   "inventory",
		Short: "Show agents, facts and classes of matching hosts",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o, err := g.run(cmd.Context(), q, "rpcutil", "inventory", nil)
			if !keepPartial(o, err) {
				return err
			}
			p := g.printer()
			if p.json {
				return p.jsonValue(jsonOutcome(o))
			}
			printInventory(g, o)
			summary(g.io.Err, o)
			return outcomeExit(o, err)
		},
	}
	q.register(c)
	return c
}

func printInventory(g *globalOptions, o *bus.Outcome) {
	w := g.io.Out
	for _, r := range o.Results {
		if r.Status != bus.ResultOK {
			fmt.Fprintf(w, "%s: %s: %s\n\n", r.Identity, r.Status, redact.String(r.Error))
			continue
		}
		inv, err := bus.ParseInventory(r.Reply.Data)
		if err != nil {
			fmt.Fprintf(w, "%s: unreadable inventory: %v\n\n", r.Identity, err)
			continue
		}
		fmt.Fprintf(w, "%s\n  version: %s\n  collective: %s\n  started: %s\n  agents:\n", r.Identity, inv.Version, inv.Collective, inv.Started)
		for _, a := range inv.Agents {
			fmt.Fprintf(w, "    %-12s %s\n", a.Name, strings.Join(a.Actions, " "))
		}
		if len(inv.Classes) > 0 {
			fmt.Fprintf(w, "  classes: %v\n", inv.Classes)
		}
		fmt.Fprintf(w, "  facts:\n")
		for _, k := range slices.Sorted(maps.Keys(inv.Facts)) {
			fmt.Fprintf(w, "    %s = %s\n", k, inv.Facts[k])
		}
		fmt.Fprintln(w)
	}
}

func newRPCCmd(g *globalOptions) *cobra.Command {
	q := &queryFlags{}
	af := &approvalFlags{}
	c := &cobra.Command{
		Use:   "rpc AGENT ACTION [input=value...]",
		Short: "Run any allowed agent action on matching hosts",
		Example: `  signet rpc rpcutil inventory -I web2
  signet rpc package update package=middleware version=1.4.2 -F zone=a --batch 2`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkRPCArgs(args); err != nil {
				return err
			}
			params, err := parseParams(args[2:])
			if err != nil {
				return err
			}
			if err := bus.CheckName("agent", args[0]); err != nil {
				return usageErrorf("%v", err)
			}
			if err := bus.CheckName("action", args[1]); err != nil {
				return usageErrorf("%v", err)
			}
			if err := af.check(); err != nil {
				return err
			}
			run := g.run
			if af.wait {
				run = func(ctx context.Context, q *queryFlags, agent, action string, params map[string]any) (*bus.Outcome, error) {
					return g.runApproved(ctx, q, af, agent, action, params)
				}
			}
			o, err := run(cmd.Context(), q, args[0], args[1], params)
			if !keepPartial(o, err) {
				return err
			}
			if err := g.printer().outcome(o); err != nil {
				return err
			}
			summary(g.io.Err, o)
			return outcomeExit(o, err)
		},
	}
	q.register(c)
	af.register(c)
	return c
}

// parseParams turns key=value arguments into request parameters. Values
// stay strings; the host coerces them to the types its DDL declares.
func parseParams(args []string) (map[string]any, error) {
	if len(args) == 0 {
		return nil, nil
	}
	params := map[string]any{}
	for i, a := range args {
		k, v, ok := strings.Cut(a, "=")
		if !ok || k == "" {
			// Not quoted: a mistyped "password hunter2" must not land in a CI log.
			return nil, usageErrorf("parameter %d after the action: want key=value", i+1)
		}
		if _, dup := params[k]; dup {
			return nil, usageErrorf("parameter %q given twice", k)
		}
		params[k] = v
	}
	return params, nil
}
