package cli

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/signetbus/signet/bus"
	"github.com/signetbus/signet/internal/sshsig"
	"github.com/signetbus/signet/internal/wire"
)

// queryFlags are MCollective's targeting flags, kept so its users feel at home.
type queryFlags struct {
	identity   []string
	fact       []string
	class      []string
	agent      []string
	with       []string
	compound   string
	batch      int
	batchSleep time.Duration
	limit      int    // set by commands (describe: 1); --limit overrides
	limitSpec  string // --limit: N or N%
	one        bool
	nodes      string
	noProgress bool
	timeout    time.Duration
	discovery  time.Duration
	record     string
}

func (q *queryFlags) register(c *cobra.Command) {
	f := c.Flags()
	f.StringArrayVarP(&q.identity, "identity", "I", nil, "match a host identity: a name, a glob ('web*') or /regex/ (repeatable; any may match)")
	f.StringArrayVarP(&q.fact, "with-fact", "F", nil, "match a fact: key=value, key!=value, key>=n, key<n, key=~regex (repeatable; all must match)")
	f.StringArrayVarP(&q.class, "with-class", "C", nil, "match a class, exact or /regex/ (repeatable)")
	f.StringArrayVarP(&q.agent, "with-agent", "A", nil, "match hosts that have an agent (repeatable)")
	f.StringArrayVarP(&q.with, "with", "W", nil, "combined class and fact filter: \"web zone=a\"")
	f.StringVarP(&q.compound, "select", "S", "", "compound filter: \"zone=a and (env=dev or env=lab) and not db\"")
	f.IntVar(&q.batch, "batch", 0, "send to this many hosts at a time")
	f.Var(seconds{&q.batchSleep}, "batch-sleep", "pause between batches, in seconds or as 5s, 1m")
	f.StringVar(&q.limitSpec, "limit", "", "send to at most this many of the matching hosts, or this percentage of them (50%)")
	f.BoolVarP(&q.one, "one", "1", false, "send to one of the matching hosts (--limit 1)")
	f.StringVar(&q.nodes, "nodes", "", "send to the host identities listed in this file, one a line")
	f.BoolVar(&q.noProgress, "np", false, "no progress line while replies arrive")
	f.BoolVar(&q.noProgress, "no-progress", false, "same as --np")
	f.VarP(seconds{&q.timeout}, "timeout", "t", "how long to wait for replies, in seconds or as 10s, 1m (default from config, 10s)")
	f.Var(seconds{&q.discovery}, "discovery-timeout", "how long broadcast discovery waits without a registry, in seconds or as 2s (default 2s)")
	f.Var(seconds{&q.discovery}, "dt", "same as --discovery-timeout (mco's name)")
	f.StringVar(&q.record, "record", "", "keep each signed request in this directory as ID.json and ID.json.sig (checkable with ssh-keygen -Y verify -n signet-request@v1)")
}

// recorder writes each signed request's payload and armored signature.
func (q *queryFlags) recorder() func([]byte) error {
	if q.record == "" {
		return nil
	}
	return func(frame []byte) error {
		env, err := wire.Parse(frame)
		if err != nil {
			return err
		}
		var head struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(env.Payload, &head); err != nil {
			return err
		}
		if err := os.MkdirAll(q.record, 0o700); err != nil {
			return err
		}
		path := filepath.Join(q.record, head.ID+".json")
		if err := os.WriteFile(path, env.Payload, 0o600); err != nil {
			return err
		}
		return os.WriteFile(path+".sig", sshsig.Armor(env.Sig), 0o600)
	}
}

func isExactIdentity(s string) bool {
	return bus.CheckIdentity(s) == nil
}

// query builds the bus query. Exact -I names alone address hosts directly.
func (q *queryFlags) query(cfg *ClientConfig, agent, action string, params map[string]any) (bus.Query, error) {
	f := bus.Filter{Fact: q.fact, Class: q.class, Agent: q.agent, Compound: q.compound}
	for _, w := range q.with {
		for _, tok := range strings.Fields(w) {
			if strings.ContainsAny(tok, "=<>") {
				f.Fact = append(f.Fact, tok)
			} else {
				f.Class = append(f.Class, tok)
			}
		}
	}
	query := bus.Query{Agent: agent, Action: action, Params: params, Batch: q.batch, BatchSleep: q.batchSleep,
		Timeout: cfg.Timeout.D(), DiscoveryTimeout: cfg.DiscoveryTimeout.D(), TTL: cfg.TTL.D(), OnSigned: q.recorder()}
	if err := q.applyLimit(&query); err != nil {
		return query, err
	}
	identities := q.identity
	if q.nodes != "" {
		ids, err := nodesFromFile(q.nodes)
		if err != nil {
			return query, err
		}
		identities = append(append([]string(nil), identities...), ids...)
	}
	if q.timeout > 0 {
		query.Timeout = q.timeout
	}
	if q.discovery > 0 {
		query.DiscoveryTimeout = q.discovery
	}
	allExact := len(identities) > 0
	ids := make([]string, 0, len(identities))
	for _, id := range identities {
		if !isExactIdentity(id) {
			allExact = false
		}
		m, err := identityFilter(id)
		if err != nil {
			return query, err
		}
		ids = append(ids, m)
	}
	if allExact && f.IsZero() {
		query.Targets = identities
	} else if len(ids) > 0 {
		f.Identity = ids
	}
	query.Filter = f
	if _, err := f.Compile(); err != nil {
		return query, usageErrorf("%v", err)
	}
	return query, nil
}

// run connects, sends the query and returns the outcome.
func (g *globalOptions) run(ctx context.Context, q *queryFlags, agent, action string, params map[string]any) (*bus.Outcome, error) {
	s, err := g.connect(ctx)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	query, err := q.query(s.cfg, agent, action, params)
	if err != nil {
		return nil, err
	}
	return g.send(ctx, s, q, query)
}

// send sends query, counting the replies on a terminal's stderr, and
// explains a filter that matched no host.
func (g *globalOptions) send(ctx context.Context, s *session, q *queryFlags, query bus.Query) (*bus.Outcome, error) {
	prog := newProgress(g.io.Err, progressOn(*g.io, q.noProgress), query.Agent+" "+query.Action)
	query.OnResult = prog.result
	query.OnTargets = prog.targets
	o, err := s.client.Do(ctx, query)
	prog.done()
	if errors.Is(err, bus.ErrNoMatch) {
		return o, explainNoMatch(ctx, s, query)
	}
	return o, err
}
