package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"golang.org/x/crypto/ssh"

	"github.com/signetbus/signet/internal/sshsig"
)

// HostKeys knows the responders' host keys (the client's known_hosts).
type HostKeys interface {
	Lookup(identity string) (ssh.PublicKey, bool)
}

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
	// finishes as soon as they have all answered. Without it the client
	// discovers hosts by broadcast, waiting DiscoveryTimeout.
	Registry *Registry
	Logger   *slog.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
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
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
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
	// Expected, when set, is the set of hosts a broadcast must hear from:
	// no discovery is done and the call ends when they have all answered.
	// Callers that already know their hosts (workflows) use it.
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
	// Batch sends to this many hosts at a time, sleeping BatchSleep between.
	Batch      int
	BatchSleep time.Duration
	// OnResult, if set, is called for each result as it arrives.
	OnResult func(Result)
	// OnSigned, if set, is called with each signed request frame before it
	// is sent (signet rpc --record keeps them for later verification).
	OnSigned func(frame []byte) error
	// Linger is how long a broadcast to registry-known hosts keeps
	// listening after the last expected host answered, to catch hosts that
	// ran the request but are missing from the registry (an expired or
	// deleted entry); they are reported like any other. Zero means twice
	// the time the expected hosts took, between 20ms and 200ms.
	Linger time.Duration
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

// ErrNoMatch is returned when no host matches the query.
var ErrNoMatch = errors.New("bus: no host matched")

// Do sends the query and collects the results.
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
	targets := q.Targets
	for _, t := range targets {
		if err := CheckIdentity(t); err != nil {
			return nil, err
		}
	}
	var expected []string
	if len(targets) == 0 && len(q.Expected) > 0 {
		expected = dedupe(q.Expected)
	} else if len(targets) == 0 {
		var err error
		expected, err = c.discover(ctx, q)
		if err != nil {
			return nil, err
		}
		if len(expected) == 0 {
			return nil, ErrNoMatch
		}
		if q.Limit > 0 || q.Batch > 0 || (c.cfg.Registry == nil && len(q.Expected) == 0) {
			targets = expected
		}
	}
	if q.Limit > 0 && len(targets) > q.Limit {
		targets = targets[:q.Limit]
	}
	out := &Outcome{}
	if len(targets) == 0 {
		// Registry-known hosts: one broadcast, finished when all answered
		// (and a short linger for hosts the registry missed). Callers that
		// name their hosts in Expected know better than the registry.
		out.Expected = len(expected)
		linger := q.Linger
		switch {
		case len(q.Expected) > 0:
			linger = 0
		case linger <= 0:
			linger = -1 // adaptive, see Query.Linger
		}
		q.Linger = linger
		if err := c.send(ctx, q, nil, expected, out, start); err != nil {
			return nil, err
		}
	} else {
		targets = dedupe(targets)
		out.Expected = len(targets)
		batch := q.Batch
		if batch <= 0 || batch > len(targets) {
			batch = len(targets)
		}
		for i := 0; i < len(targets); i += batch {
			if i > 0 && q.BatchSleep > 0 {
				select {
				case <-time.After(q.BatchSleep):
				case <-ctx.Done():
					return out, ctx.Err()
				}
			}
			end := min(i+batch, len(targets))
			if err := c.send(ctx, q, targets[i:end], targets[i:end], out, start); err != nil {
				return out, err
			}
		}
	}
	sort.SliceStable(out.Results, func(i, j int) bool { return out.Results[i].Identity < out.Results[j].Identity })
	out.Elapsed = c.cfg.Now().Sub(start)
	if !c.cfg.Conn.IsConnected() {
		out.Warnings = append(out.Warnings, "lost the connection to the broker: hosts may not have received the request")
	}
	return out, nil
}

// discover returns the hosts the query should reach.
func (c *Client) discover(ctx context.Context, q Query) ([]string, error) {
	m, err := q.Filter.Compile()
	if err != nil {
		return nil, err
	}
	if c.cfg.Registry != nil {
		regs, err := c.cfg.Registry.List(ctx)
		if err != nil {
			return nil, err
		}
		var ids []string
		for _, r := range regs {
			if slices.Contains(r.Agents, q.Agent) && m.Match(r.Node()) {
				ids = append(ids, r.Identity)
			}
		}
		if len(regs) > 0 {
			return ids, nil
		}
		c.log.Debug("registry empty, falling back to broadcast discovery")
	}
	// Broadcast discovery: a signed rpcutil ping to every host with the agent.
	f := q.Filter
	f.Agent = append(append([]string(nil), f.Agent...), q.Agent)
	ping := Query{Agent: "rpcutil", Action: "ping", Filter: f, Timeout: q.DiscoveryTimeout, TTL: q.DiscoveryTimeout + 30*time.Second}
	out := &Outcome{}
	if err := c.send(ctx, ping, nil, nil, out, c.cfg.Now()); err != nil {
		return nil, fmt.Errorf("discovery: %w", err)
	}
	var ids []string
	for _, r := range out.Results {
		if r.Status == ResultOK {
			ids = append(ids, r.Identity)
		}
	}
	sort.Strings(ids)
	return ids, nil
}

// send signs one request and collects replies until every expected host
// has answered or the timeout passes. With expected empty it collects until
// the timeout (discovery).
func (c *Client) send(ctx context.Context, q Query, targets, expected []string, out *Outcome, start time.Time) error {
	req := &Request{
		Version:    ProtocolVersion,
		ID:         NewID(),
		Sender:     Sender{User: c.cfg.User, Key: c.fp},
		Collective: c.cfg.Collective,
		Agent:      q.Agent,
		Action:     q.Action,
		Params:     q.Params,
		Filter:     q.Filter,
		Targets:    targets,
		Created:    c.cfg.Now().UnixMilli(),
		TTL:        int((q.TTL + time.Second - 1) / time.Second),
	}
	frame, err := SignRequest(c.cfg.Signer, req)
	if err != nil {
		return fmt.Errorf("sign request: %w", err)
	}
	out.RequestIDs = append(out.RequestIDs, req.ID)
	if q.OnSigned != nil {
		if err := q.OnSigned(frame); err != nil {
			return fmt.Errorf("record request: %w", err)
		}
	}
	inbox, queue, done, err := c.replies.open()
	if err != nil {
		return err
	}
	defer done()

	pending := make(map[string]bool, len(expected))
	for _, id := range expected {
		pending[id] = true
	}
	seen := map[string]bool{}
	sent := c.cfg.Now()
	if len(targets) > 0 {
		for _, t := range targets {
			if err := c.cfg.Conn.PublishMsg(&nats.Msg{Subject: NodeSubject(c.cfg.Collective, t), Reply: inbox, Data: frame}); err != nil {
				return fmt.Errorf("publish to %s: %w", t, err)
			}
		}
	} else if err := c.cfg.Conn.PublishMsg(&nats.Msg{Subject: AgentSubject(c.cfg.Collective, q.Agent), Reply: inbox, Data: frame}); err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	timer := time.NewTimer(q.Timeout)
	defer timer.Stop()
	add := func(r Result) {
		out.Results = append(out.Results, r)
		if q.OnResult != nil {
			q.OnResult(r)
		}
	}
	// Replies are verified on every core: with thousands of hosts the
	// client's signature checks would otherwise be the bottleneck.
	results := make(chan Result, 1024)
	wctx, stop := context.WithCancel(context.Background())
	var workers sync.WaitGroup
	defer func() { stop(); workers.Wait() }()
	nworkers := runtime.GOMAXPROCS(0)
	if len(expected) > 0 {
		nworkers = min(nworkers, len(expected))
	}
	for range nworkers {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for {
				m, ok := queue.next(wctx)
				if !ok {
					return // stopped
				}
				if len(m.Data) == 0 && m.Header.Get("Status") != "" {
					continue // the broker's "no responders" notice for a direct subject
				}
				r := c.verifyReply(m.Data, req)
				r.Elapsed = c.cfg.Now().Sub(sent)
				select {
				case results <- r:
				case <-wctx.Done():
					return
				}
			}
		}()
	}
	lingering := false
wait:
	for {
		if len(expected) > 0 && len(pending) == 0 && !lingering {
			if q.Linger == 0 {
				break
			}
			// Every expected host answered: listen a little longer for
			// hosts the registry did not know.
			linger := q.Linger
			if linger < 0 {
				linger = min(max(2*c.cfg.Now().Sub(sent), 20*time.Millisecond), 200*time.Millisecond)
			}
			lingering = true
			timer.Reset(linger)
		}
		select {
		case r := <-results:
			switch {
			case r.Status == ResultForged || r.Status == ResultUnknownHost:
				// Never satisfies an expected host: the real one may still answer.
				add(r)
			case seen[r.Identity]:
				c.log.Warn("duplicate reply ignored", "identity", r.Identity, "request_id", req.ID)
			default:
				seen[r.Identity] = true
				delete(pending, r.Identity)
				add(r)
			}
		case <-timer.C:
			break wait
		case <-ctx.Done():
			break wait
		}
	}
	missing := make([]string, 0, len(pending))
	for id := range pending {
		missing = append(missing, id)
	}
	sort.Strings(missing)
	why := fmt.Sprintf("no response within %s", q.Timeout)
	if ctx.Err() != nil {
		why = "interrupted before the host answered"
	}
	for _, id := range missing {
		add(Result{Identity: id, Status: ResultNoResponse, Error: why})
	}
	return ctx.Err()
}

// verifyReply checks a reply frame against the request and the host keys.
func (c *Client) verifyReply(frame []byte, req *Request) Result {
	rep, opened, err := ParseReply(frame)
	if rep == nil {
		return Result{Identity: "?", Status: ResultForged, Error: "unparseable reply: " + err.Error()}
	}
	id := rep.Identity
	if id == "" {
		id = "?"
	}
	if err != nil {
		return Result{Identity: id, Status: ResultForged, Error: "reply signature malformed: " + err.Error()}
	}
	pub, ok := c.cfg.HostKeys.Lookup(rep.Identity)
	if !ok {
		return Result{Identity: id, Status: ResultUnknownHost, Error: "host key of " + id + " is not in known_hosts; reply not trusted"}
	}
	if opened.Sig.Namespace != ReplyNamespace {
		return Result{Identity: id, Status: ResultForged, Error: "reply signed for namespace " + opened.Sig.Namespace}
	}
	if string(opened.Sig.PublicKey) != string(pub.Marshal()) {
		return Result{Identity: id, Status: ResultForged, Error: "reply signed by a key that is not " + id + "'s host key"}
	}
	if err := opened.Sig.VerifyWith(pub, opened.Envelope.Payload); err != nil {
		if errors.Is(err, sshsig.ErrBadSig) {
			return Result{Identity: id, Status: ResultForged, Error: "reply signature does not verify"}
		}
		return Result{Identity: id, Status: ResultForged, Error: err.Error()}
	}
	if rep.RequestID != req.ID && rep.RequestID != "" {
		return Result{Identity: id, Status: ResultForged, Error: "reply is for another request (" + rep.RequestID + ")"}
	}
	r := Result{Identity: id, Reply: rep}
	switch rep.Status {
	case StatusOK:
		r.Status = ResultOK
	case StatusRefused:
		r.Status, r.Error = ResultRefused, rep.Error
	default:
		r.Status, r.Error = ResultFailed, rep.Error
	}
	return r
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
