package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"golang.org/x/crypto/ssh"

	"github.com/signetbus/signet/internal/redact"
	"github.com/signetbus/signet/internal/sshsig"
)

// Principal is an operator key a host trusts, with the roles the host's
// trust file gives it.
type Principal struct {
	Name        string
	Roles       []string
	Fingerprint string
	Key         ssh.PublicKey
}

// Trust finds the principal behind a signing key, given the key's wire form.
type Trust interface {
	LookupKey(blob []byte) (*Principal, bool)
}

// Call is an authenticated, fresh, correctly addressed request.
type Call struct {
	Request   *Request
	Principal *Principal
	// Direct is true when the request came on this host's own subject.
	Direct bool
}

// Handler runs calls. It returns the outcome part of the reply (Status,
// Code, Error, Changed, Summary, Data); the responder fills in the rest and
// signs it. The context ends at the request's deadline.
type Handler interface {
	Handle(ctx context.Context, call *Call) *Reply
}

// Auditor records every decision a responder takes. Audit must not block
// for long; it is called on the request path.
type Auditor interface {
	Audit(rec *AuditRecord)
}

// AuditRecord is one line of the audit log.
type AuditRecord struct {
	Time      time.Time      `json:"time"`
	Identity  string         `json:"identity"`
	RequestID string         `json:"request_id,omitempty"`
	Subject   string         `json:"subject"`
	Principal string         `json:"principal,omitempty"`
	User      string         `json:"user,omitempty"`
	Key       string         `json:"key,omitempty"`
	Roles     []string       `json:"roles,omitempty"`
	Agent     string         `json:"agent,omitempty"`
	Action    string         `json:"action,omitempty"`
	Params    map[string]any `json:"params,omitempty"`
	// Decision is "accepted" when the action ran, "refused" when it did
	// not, and "dropped" when the bytes could not be parsed at all.
	Decision   string `json:"decision"`
	Status     Status `json:"status,omitempty"`
	Code       string `json:"code,omitempty"`
	Reason     string `json:"reason,omitempty"`
	Changed    bool   `json:"changed,omitempty"`
	Summary    string `json:"summary,omitempty"`
	DurationMS int64  `json:"duration_ms"`
	Bytes      int    `json:"bytes"`
}

// ResponderConfig configures a Responder.
type ResponderConfig struct {
	// Conn is the broker connection. Several responders may share one.
	Conn *nats.Conn
	// Collective is the subject prefix.
	Collective string
	// HostKey signs replies.
	HostKey ssh.Signer
	// Node returns the host's identity, facts, agents and classes. It is
	// called for every request, so it must be cheap.
	Node func() *Node
	// Trust, Handler and Audit are required.
	Trust   Trust
	Handler Handler
	Audit   Auditor
	// Logger receives operational logs; nil discards them.
	Logger *slog.Logger
	// MaxRequestBytes refuses larger requests; default 64 KiB.
	MaxRequestBytes int
	// MaxTTL refuses requests that ask to stay valid longer; default 10m.
	MaxTTL time.Duration
	// ClockSkew is how far a request's creation time may lie in the future,
	// and how long past its TTL it is still accepted; default 30s.
	ClockSkew time.Duration
	// MaxConcurrent bounds actions running at once; default 16. Further
	// requests wait for a slot until their deadline.
	MaxConcurrent int
	// ReplayCacheSize bounds remembered request ids; default 100000.
	ReplayCacheSize int
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Responder answers signed requests for one host identity.
type Responder struct {
	cfg     ResponderConfig
	log     *slog.Logger
	replay  *replayCache
	sem     chan struct{}
	started time.Time

	mu       sync.Mutex
	subs     []*nats.Subscription
	inflight sync.WaitGroup
	closed   bool
}

// NewResponder checks the config and fills in defaults.
func NewResponder(cfg ResponderConfig) (*Responder, error) {
	if cfg.Conn == nil || cfg.HostKey == nil || cfg.Node == nil || cfg.Trust == nil || cfg.Handler == nil || cfg.Audit == nil {
		return nil, errors.New("bus: responder needs Conn, HostKey, Node, Trust, Handler and Audit")
	}
	if err := CheckCollective(cfg.Collective); err != nil {
		return nil, err
	}
	if err := CheckIdentity(cfg.Node().Identity); err != nil {
		return nil, err
	}
	if cfg.MaxRequestBytes <= 0 {
		cfg.MaxRequestBytes = 64 << 10
	}
	if cfg.MaxTTL <= 0 {
		cfg.MaxTTL = 10 * time.Minute
	}
	if cfg.ClockSkew <= 0 {
		cfg.ClockSkew = 30 * time.Second
	}
	if cfg.MaxConcurrent <= 0 {
		cfg.MaxConcurrent = 16
	}
	if cfg.ReplayCacheSize <= 0 {
		cfg.ReplayCacheSize = 100000
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Responder{
		cfg:     cfg,
		log:     log.With("identity", cfg.Node().Identity),
		replay:  newReplayCache(cfg.ReplayCacheSize),
		sem:     make(chan struct{}, cfg.MaxConcurrent),
		started: cfg.Now().Truncate(time.Millisecond), // requests carry milliseconds
	}, nil
}

// Start subscribes to the host's direct subject and to the broadcast
// subject of each of its agents.
func (r *Responder) Start() error {
	n := r.cfg.Node()
	subjects := []string{NodeSubject(r.cfg.Collective, n.Identity)}
	agents := append([]string(nil), n.Agents...)
	sort.Strings(agents)
	for _, a := range agents {
		subjects = append(subjects, AgentSubject(r.cfg.Collective, a))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range subjects {
		direct := s == subjects[0]
		sub, err := r.cfg.Conn.Subscribe(s, func(m *nats.Msg) { r.dispatch(m, direct) })
		if err != nil {
			return fmt.Errorf("subscribe %s: %w", s, err)
		}
		sub.SetPendingLimits(-1, 256<<20)
		r.subs = append(r.subs, sub)
	}
	return nil
}

// Shutdown stops taking requests and waits for in-flight actions to finish
// or for ctx to end.
func (r *Responder) Shutdown(ctx context.Context) error {
	r.mu.Lock()
	r.closed = true
	for _, s := range r.subs {
		_ = s.Unsubscribe()
	}
	r.subs = nil
	r.mu.Unlock()
	done := make(chan struct{})
	go func() { r.inflight.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("shutdown: actions still running: %w", ctx.Err())
	}
}

func (r *Responder) dispatch(m *nats.Msg, direct bool) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	r.inflight.Add(1)
	r.mu.Unlock()
	go func() {
		defer r.inflight.Done()
		r.handle(m, direct)
	}()
}

// refusal is a request turned away before any action ran.
type refusal struct {
	code, reason string
}

func (r *Responder) handle(m *nats.Msg, direct bool) {
	start := r.cfg.Now()
	node := r.cfg.Node()
	rec := &AuditRecord{Time: start, Identity: node.Identity, Subject: m.Subject, Bytes: len(m.Data)}
	finish := func(rep *Reply) {
		rec.DurationMS = r.cfg.Now().Sub(start).Milliseconds()
		r.cfg.Audit.Audit(rec)
		if rep == nil || m.Reply == "" {
			return
		}
		rep.Version = ProtocolVersion
		rep.Identity = node.Identity
		rep.Time = r.cfg.Now().UnixMilli()
		rep.DurationMS = rec.DurationMS
		bindReply(rep, m.Data)
		frame, err := SignReply(r.cfg.HostKey, rep)
		if err != nil {
			r.log.Error("sign reply", "request_id", rep.RequestID, "err", err)
			return
		}
		if err := m.Respond(frame); err != nil {
			r.log.Warn("send reply", "request_id", rep.RequestID, "err", err)
		}
	}
	refuse := func(req *Request, f refusal) {
		rec.Decision, rec.Status, rec.Code, rec.Reason = "refused", StatusRefused, f.code, f.reason
		rep := &Reply{Status: StatusRefused, Code: f.code, Error: f.reason}
		if req != nil {
			rep.RequestID, rep.Agent, rep.Action = req.ID, req.Agent, req.Action
		}
		r.log.Info("request refused", "request_id", rec.RequestID, "code", f.code, "reason", redact.String(f.reason), "sender", rec.User)
		finish(rep)
	}

	if len(m.Data) > r.cfg.MaxRequestBytes {
		refuse(nil, refusal{CodeTooLarge, fmt.Sprintf("request is %d bytes, this host accepts at most %d", len(m.Data), r.cfg.MaxRequestBytes)})
		return
	}
	req, opened, err := ParseRequest(m.Data)
	if req == nil {
		// Not even a frame: nothing to answer to. Audited, not replied.
		rec.Decision, rec.Code, rec.Reason = "dropped", CodeMalformed, err.Error()
		r.log.Warn("dropped unparseable message", "subject", m.Subject, "err", err)
		finish(nil)
		return
	}
	rec.RequestID, rec.User, rec.Key = req.ID, req.Sender.User, req.Sender.Key
	rec.Agent, rec.Action, rec.Params = req.Agent, req.Action, req.Params
	if err := CheckID(req.ID); err != nil {
		refuse(req, refusal{CodeMalformed, err.Error()})
		return
	}
	if err != nil {
		refuse(req, refusal{CodeBadSignature, "malformed signature: " + err.Error()})
		return
	}
	principal, f := r.authenticate(req, opened)
	if f != nil {
		refuse(req, *f)
		return
	}
	rec.Principal, rec.Roles = principal.Name, principal.Roles
	now := r.cfg.Now()
	if f := r.checkRequest(req, node, direct, now); f != nil {
		if f.code == "" { // not for this host: stay silent, as a broadcast expects
			return
		}
		refuse(req, *f)
		return
	}
	deadline := req.CreatedTime().Add(time.Duration(req.TTL) * time.Second)
	fresh, err := r.replay.add(req.ID, deadline.Add(r.cfg.ClockSkew), now)
	if err != nil {
		refuse(req, refusal{CodeBusy, "too many requests in flight to check for replays; retry later"})
		return
	}
	if !fresh {
		refuse(req, refusal{CodeReplay, fmt.Sprintf("request id %s was already seen (replay)", req.ID)})
		return
	}

	ctx, cancel := context.WithDeadline(context.Background(), deadline.Add(r.cfg.ClockSkew))
	defer cancel()
	select {
	case r.sem <- struct{}{}:
	case <-ctx.Done():
		refuse(req, refusal{CodeBusy, fmt.Sprintf("%d actions already running on this host; none finished before the request expired", cap(r.sem))})
		return
	}
	rep := r.cfg.Handler.Handle(ctx, &Call{Request: req, Principal: principal, Direct: direct})
	<-r.sem
	if rep == nil {
		rep = &Reply{Status: StatusFailed, Code: CodeFailed, Error: "handler returned no result"}
	}
	rep.RequestID, rep.Agent, rep.Action = req.ID, req.Agent, req.Action
	rec.Status, rec.Code, rec.Reason, rec.Changed, rec.Summary = rep.Status, rep.Code, rep.Error, rep.Changed, rep.Summary
	rec.Decision = "accepted"
	if rep.Status == StatusRefused {
		rec.Decision = "refused"
	}
	finish(rep)
}

// authenticate checks the signature and finds the trusted principal.
func (r *Responder) authenticate(req *Request, o *Opened) (*Principal, *refusal) {
	if o.Sig.Namespace != RequestNamespace {
		return nil, &refusal{CodeBadSignature, fmt.Sprintf("signature namespace is %q, want %q", o.Sig.Namespace, RequestNamespace)}
	}
	p, ok := r.cfg.Trust.LookupKey(o.Sig.PublicKey)
	if !ok {
		fp := "unparseable key"
		if pub, err := ssh.ParsePublicKey(o.Sig.PublicKey); err == nil {
			fp = ssh.FingerprintSHA256(pub)
		}
		return nil, &refusal{CodeUntrusted, fmt.Sprintf("key %s is not trusted on this host", fp)}
	}
	if err := o.Sig.VerifyWith(p.Key, o.Envelope.Payload); err != nil {
		if errors.Is(err, sshsig.ErrBadSig) {
			return nil, &refusal{CodeBadSignature, "signature does not verify: the request was altered after signing or signed by another key"}
		}
		return nil, &refusal{CodeBadSignature, err.Error()}
	}
	if req.Sender.Key != p.Fingerprint {
		return nil, &refusal{CodeBadSignature, fmt.Sprintf("request claims key %s but is signed by %s", req.Sender.Key, p.Fingerprint)}
	}
	return p, nil
}

// checkRequest applies the protocol rules after authentication. A refusal
// with an empty code means the request is not for this host.
func (r *Responder) checkRequest(req *Request, node *Node, direct bool, now time.Time) *refusal {
	if req.Version != ProtocolVersion {
		return &refusal{CodeVersion, fmt.Sprintf("protocol version %d, this host speaks %d", req.Version, ProtocolVersion)}
	}
	if req.Collective != r.cfg.Collective {
		return &refusal{CodeCollective, fmt.Sprintf("request is for collective %q, this host is in %q", req.Collective, r.cfg.Collective)}
	}
	if req.TTL <= 0 {
		return &refusal{CodeTTL, "request has no ttl"}
	}
	ttl := time.Duration(req.TTL) * time.Second
	if ttl > r.cfg.MaxTTL {
		return &refusal{CodeTTL, fmt.Sprintf("ttl %s exceeds this host's maximum %s", ttl, r.cfg.MaxTTL)}
	}
	created := req.CreatedTime()
	if ahead := created.Sub(now); ahead > r.cfg.ClockSkew {
		return &refusal{CodeFuture, fmt.Sprintf("request is dated %s in the future (allowed clock skew %s); check the clocks", ahead.Round(time.Second), r.cfg.ClockSkew)}
	}
	if late := now.Sub(created.Add(ttl)); late > r.cfg.ClockSkew {
		return &refusal{CodeExpired, fmt.Sprintf("request expired %s ago (ttl %s)", now.Sub(created.Add(ttl)).Round(time.Second), ttl)}
	}
	if created.Before(r.started) {
		// The replay cache lives in memory: a restarted responder cannot
		// know which older ids it has already run, so it runs none.
		return &refusal{CodeReplay, fmt.Sprintf("request was signed at %s, before this host's responder started at %s; a restart forgets which requests ran, so older ones are refused: sign a new one",
			created.UTC().Format(time.RFC3339), r.started.UTC().Format(time.RFC3339))}
	}
	named := len(req.Targets) == 0
	for _, t := range req.Targets {
		if t == node.Identity {
			named = true
			break
		}
	}
	if direct && (len(req.Targets) == 0 || !named) {
		return &refusal{CodeWrongHost, fmt.Sprintf("direct request names %s, not this host", strings.Join(req.Targets, ", "))}
	}
	if !named {
		return &refusal{} // broadcast for other hosts
	}
	if !req.Filter.IsZero() {
		m, err := req.Filter.Compile()
		if err != nil {
			return &refusal{CodeMalformed, err.Error()}
		}
		if !m.Match(node) {
			if direct {
				return &refusal{CodeWrongHost, "this host does not match the request's filter"}
			}
			return &refusal{}
		}
	}
	return nil
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, call *Call) *Reply

// Handle calls f.
func (f HandlerFunc) Handle(ctx context.Context, call *Call) *Reply { return f(ctx, call) }
