package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"time"

	"github.com/nats-io/nats.go"
	"golang.org/x/crypto/ssh"
)

// HostKeys knows the responders' host keys (the client's known_hosts).
type HostKeys interface {
	Lookup(identity string) (ssh.PublicKey, bool)
}

// coversHost reports whether a reply from identity could be verified: its
// key is pinned, or (when HostKeys has a Covers method, as known_hosts
// does) a host certificate authority is trusted for that name.
func (c *Client) coversHost(identity string) bool { return hostCovered(c.cfg.HostKeys, identity) }

// ClientConfig configures a Client.
type ClientConfig struct {
	Conn       *nats.Conn
	Collective string
	// Signer signs requests: a key file or an ssh-agent key.
	Signer ssh.Signer
	// User is the operator's name, carried in the request.
	User string
	// HostKeys verifies replies. A reply from a host it does not know is
	// reported as such and never counted as a success.
	HostKeys HostKeys
	// Registry, when set, gives the expected hosts of a request so that it
	// finishes as soon as they have all answered. Without it (or when a
	// LazyRegistry finds no bucket) the client discovers hosts by
	// broadcast, waiting DiscoveryTimeout. Unless the
	// caller already called Registry.Verify, NewClient makes it verify
	// entries against HostKeys and log each one it ignores.
	Registry *Registry
	Logger   *slog.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Protocol is the protocol version requests are signed in,
	// MinProtocolVersion to ProtocolVersion; 0 means ProtocolVersion. An
	// operator pins the older one while hosts of the previous release
	// remain (client config protocol:, docs/upgrading.md).
	Protocol int
}

// Client sends signed requests and collects verified replies.
type Client struct {
	cfg     ClientConfig
	log     *slog.Logger
	fp      string
	replies *replyMux
}

// NewClient checks the config.
func NewClient(cfg ClientConfig) (*Client, error) {
	if cfg.Conn == nil || cfg.Signer == nil || cfg.HostKeys == nil {
		return nil, errors.New("bus: client needs Conn, Signer and HostKeys")
	}
	if err := CheckCollective(cfg.Collective); err != nil {
		return nil, err
	}
	if cfg.Protocol == 0 {
		cfg.Protocol = ProtocolVersion
	}
	if err := CheckClientProtocol(cfg.Protocol); err != nil {
		return nil, err
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if r := cfg.Registry; r != nil {
		r.mu.Lock()
		if r.keys == nil {
			r.keys = cfg.HostKeys
			r.report = func(key string, err error) {
				log.Warn("ignored a registry entry that does not verify", "entry", key, "err", err)
			}
		}
		r.mu.Unlock()
	}
	return &Client{cfg: cfg, log: log, fp: ssh.FingerprintSHA256(cfg.Signer.PublicKey()), replies: &replyMux{nc: cfg.Conn}}, nil
}

// Query is one request to a set of hosts.
type Query struct {
	Agent  string
	Action string
	Params map[string]any
	Filter Filter
	// Targets sends the request directly to exactly these identities.
	Targets []string
	// Provenance, when set, travels in the signed request (the run,
	// ticket and build behind it) and lands in the hosts' audit records.
	Provenance *Provenance
	// Expected, when set, is the set of hosts a broadcast must hear from:
	// no discovery is done, the signed request names them (Request.Targets)
	// so no other host runs it, and the call ends when they have all
	// answered. Callers that already know their hosts (workflows) use it.
	Expected []string
	// Timeout bounds the wait for replies after sending; default 10s.
	Timeout time.Duration
	// DiscoveryTimeout bounds broadcast discovery when there is no
	// registry; default 2s.
	DiscoveryTimeout time.Duration
	// TTL is how long the request stays valid; default 60s, and at least
	// Timeout.
	TTL time.Duration
	// Limit caps the number of hosts the request goes to.
	Limit int
	// Run names the workflow run that sends the request (Request.Run).
	Run string
	// LimitPercent, 1 to 100, caps it to this share of the matching
	// hosts, rounded up (mco's --limit 50%).
	LimitPercent int
	// Batch sends to this many hosts at a time, sleeping BatchSleep between.
	Batch      int
	BatchSleep time.Duration
	// OnResult, if set, is called for each result as it arrives. A host
	// whose result changes (a second, different signed reply makes it
	// failed: conflicting signed replies) is reported again.
	OnResult func(Result)
	// OnTargets, if set, is called once with the number of hosts the
	// request goes to, after discovery and Limit (a progress display's
	// total).
	OnTargets func(n int)
	// protocol, when set, is the version to sign in instead of the
	// client's (retryOlder).
	protocol int
	// OnSigned, if set, is called with each signed request frame before it
	// is sent (signet rpc --record keeps them for later verification).
	OnSigned func(frame []byte) error
	// Approval, when set, is carried by every request of the call (the
	// two-person rule, see ApprovalProof).
	Approval *ApprovalProof

	// plan is what the registry listing of this call says about the
	// hosts' shard subjects; nil when the registry was not listed.
	plan *shardPlan
}

// ResultStatus classifies one host's outcome as the client sees it.
type ResultStatus string

// Result statuses. Only ResultOK is a success.
const (
	ResultOK          ResultStatus = "ok"
	ResultFailed      ResultStatus = "failed"
	ResultRefused     ResultStatus = "refused"
	ResultNoResponse  ResultStatus = "no response"
	ResultForged      ResultStatus = "forged"
	ResultUnknownHost ResultStatus = "unknown host"
	// ResultUnexpected is a verified reply from a host the request did not
	// name: it ran something the client did not ask it to, so it counts as
	// a failure.
	ResultUnexpected ResultStatus = "unexpected"
)

// Result is one host's answer, or the lack of it.
type Result struct {
	Identity string       `json:"identity"`
	Status   ResultStatus `json:"status"`
	// Reply is the verified reply; nil for no response, forged and unknown.
	Reply *Reply `json:"reply,omitempty"`
	// Error explains a status other than ok.
	Error string `json:"error,omitempty"`
	// Elapsed is the time from sending to this reply.
	Elapsed time.Duration `json:"elapsed_ns"`
}

// Outcome is the answer to a Query.
type Outcome struct {
	RequestIDs []string      `json:"request_ids"`
	Results    []Result      `json:"results"`
	Elapsed    time.Duration `json:"elapsed_ns"`
	// Expected is how many hosts were expected to answer; zero when the
	// request was an open broadcast.
	Expected int `json:"expected"`
	// Warnings say why results may be incomplete (lost broker connection).
	Warnings []string `json:"warnings,omitempty"`
}

// Counts tallies the outcome.
func (o *Outcome) Counts() (ok, failed, noResponse int) {
	for _, r := range o.Results {
		switch r.Status {
		case ResultOK:
			ok++
		case ResultNoResponse:
			noResponse++
		default:
			failed++
		}
	}
	return
}

// unknownHostError says that id's host key is not in known_hosts, and
// how to add it.
func unknownHostError(id string) string {
	return "host key of " + id + " is not in known_hosts (add the line `signetd --print-host-key` prints on " + id + ")"
}

// ErrNoMatch is returned when no host matches the query.
var ErrNoMatch = errors.New("bus: no host matched")

// Do sends the query and collects the results. When it fails after
// sending (the context ended, a publish failed), it returns the results
// collected so far together with the error.
func (c *Client) Do(ctx context.Context, q Query) (*Outcome, error) {
	if err := CheckName("agent", q.Agent); err != nil {
		return nil, err
	}
	if err := CheckName("action", q.Action); err != nil {
		return nil, err
	}
	if _, err := q.Filter.Compile(); err != nil {
		return nil, err
	}
	for _, t := range q.Targets {
		if err := CheckIdentity(t); err != nil {
			return nil, err
		}
	}
	for _, t := range q.Expected {
		if err := CheckIdentity(t); err != nil {
			return nil, err
		}
	}
	if q.Timeout <= 0 {
		q.Timeout = 10 * time.Second
	}
	if q.DiscoveryTimeout <= 0 {
		q.DiscoveryTimeout = 2 * time.Second
	}
	if q.TTL <= 0 {
		q.TTL = 60 * time.Second
	}
	if q.TTL < q.Timeout {
		q.TTL = q.Timeout
	}
	start := c.cfg.Now()
	out := &Outcome{}
	finish := func(err error) (*Outcome, error) {
		sort.SliceStable(out.Results, func(i, j int) bool { return out.Results[i].Identity < out.Results[j].Identity })
		out.Elapsed = c.cfg.Now().Sub(start)
		if !c.cfg.Conn.IsConnected() {
			out.Warnings = append(out.Warnings, "lost the connection to the broker: hosts may not have received the request")
		}
		return out, err
	}
	// Every request names its hosts: given (Targets), known (Expected),
	// or found in the registry or by discovery. A host that is not named
	// never runs it.
	targets := dedupe(q.Targets)
	broadcast := false
	if len(targets) == 0 {
		broadcast = true
		if len(q.Expected) > 0 {
			targets = dedupe(q.Expected)
		} else {
			var err error
			var regs []*Registration
			targets, regs, err = c.discover(ctx, q)
			q.plan = newShardPlan(regs)
			if err != nil {
				if ctx.Err() != nil {
					return finish(err)
				}
				return nil, err
			}
			if len(targets) == 0 {
				return nil, ErrNoMatch
			}
		}
	}
	if q.LimitPercent > 0 && q.LimitPercent < 100 {
		n := (len(targets)*q.LimitPercent + 99) / 100
		if q.Limit <= 0 || n < q.Limit {
			q.Limit = n
		}
	}
	if q.Limit > 0 && len(targets) > q.Limit {
		targets = targets[:q.Limit]
	}
	out.Expected = len(targets)
	if q.OnTargets != nil {
		q.OnTargets(len(targets))
	}
	// A host whose key is not in known_hosts could answer, but its reply
	// could never be trusted: it is reported once, as unknown host, and
	// not sent the request (nor waited for).
	known := targets[:0:0]
	for _, t := range targets {
		if c.coversHost(t) {
			known = append(known, t)
			continue
		}
		r := Result{Identity: t, Status: ResultUnknownHost, Error: unknownHostError(t) + "; the request was not sent to it"}
		out.Results = append(out.Results, r)
		if q.OnResult != nil {
			q.OnResult(r)
		}
	}
	if targets = known; len(targets) == 0 {
		return finish(nil)
	}
	q = c.holdOlder(q)
	// A host named directly that the registry does not know fails at
	// once, by name, instead of being waited for (unregistered.go).
	if len(q.Targets) > 0 {
		if missing := c.unregistered(ctx, targets); len(missing) > 0 {
			targets = slices.DeleteFunc(targets, func(t string) bool { return slices.Contains(missing, t) })
			for _, t := range missing {
				r := Result{Identity: t, Status: ResultNotRegistered, Error: notRegisteredError(t)}
				out.Results = append(out.Results, r)
				if q.OnResult != nil {
					q.OnResult(r)
				}
			}
			if len(targets) == 0 {
				return finish(nil)
			}
		}
	}
	batch := q.Batch
	if batch <= 0 || batch > len(targets) {
		batch = len(targets)
	} else {
		broadcast = false // a batch goes to its hosts' own subjects
	}
	for i := 0; i < len(targets); i += batch {
		if i > 0 && q.BatchSleep > 0 {
			select {
			case <-time.After(q.BatchSleep):
			case <-ctx.Done():
				return finish(ctx.Err())
			}
		}
		end := min(i+batch, len(targets))
		from := len(out.Results)
		if err := c.send(ctx, q, targets[i:end], broadcast, out, start); err != nil {
			return finish(err)
		}
		if err := c.retryOlder(ctx, q, out, from, start); err != nil {
			return finish(err)
		}
	}
	return finish(nil)
}

// discoverListBound bounds listing the registry for a query whose
// context has no deadline: a few registry attempts (listAttempt each).
const discoverListBound = 20 * time.Second

// discover returns the hosts the query should reach and, when it listed
// the registry, the listing.
func (c *Client) discover(ctx context.Context, q Query) ([]string, []*Registration, error) {
	m, err := q.Filter.Compile()
	if err != nil {
		return nil, nil, err
	}
	if c.cfg.Registry != nil {
		lctx := ctx
		if _, ok := ctx.Deadline(); !ok {
			// A command without a deadline (signet ping) must not wait
			// for ever on a registry whose broker never answers.
			var cancel context.CancelFunc
			lctx, cancel = context.WithTimeout(ctx, discoverListBound)
			defer cancel()
		}
		regs, err := c.cfg.Registry.List(lctx)
		if err != nil && !errors.Is(err, ErrNoRegistry) { // none: a lazy registry found no bucket
			return nil, nil, err
		}
		var ids []string
		for _, r := range regs {
			if slices.Contains(r.Agents, q.Agent) && m.Match(r.Node()) {
				ids = append(ids, r.Identity)
			}
		}
		if len(regs) > 0 {
			return ids, regs, nil
		}
		c.log.Debug("registry empty, falling back to broadcast discovery")
	}
	// Broadcast discovery: a signed rpcutil ping to every host with the agent.
	f := q.Filter
	f.Agent = append(append([]string(nil), f.Agent...), q.Agent)
	ping := Query{Agent: "rpcutil", Action: "ping", Filter: f, Timeout: q.DiscoveryTimeout, TTL: q.DiscoveryTimeout + 30*time.Second}
	out := &Outcome{}
	if err := c.send(ctx, ping, nil, true, out, c.cfg.Now()); err != nil {
		return nil, nil, fmt.Errorf("discovery: %w", err)
	}
	var ids []string
	for _, r := range out.Results {
		if r.Status == ResultOK {
			ids = append(ids, r.Identity)
		}
	}
	sort.Strings(ids)
	return ids, nil, nil
}

func dedupe(ids []string) []string {
	seen := make(map[string]bool, len(ids))
	out := ids[:0:0]
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}
