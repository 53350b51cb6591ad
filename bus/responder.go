package bus

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
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
	// Cert is the user certificate that made Key a principal, nil for a
	// key the trust file lists.
	Cert *ssh.Certificate
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
	// Authorized is what the handler's Authorize left for its Handle (for
	// example the validated parameters), so Handle need not check again;
	// nil when the handler is not an Authorizer.
	Authorized any
	// Approvers are the approvers (name and key) the Authorizer counted
	// under the two-person rule; the audit record carries them.
	Approvers []string
}

// Handler runs calls. It returns the outcome part of the reply (Status,
// Code, Error, Changed, Summary, Data); the responder fills in the rest and
// signs it. The context ends at the request's deadline.
type Handler interface {
	Handle(ctx context.Context, call *Call) *Reply
}

// Authorizer is an optional part of a Handler: the host's policy and
// parameter validation. The responder calls it before it admits the
// request id to its replay cache, so only requests that will run take
// space there. It returns nil to allow the call, or the refusal to send.
type Authorizer interface {
	Authorize(ctx context.Context, call *Call) *Reply
}

// CodeAuditUnavailable refuses an action because the record that it starts
// could not be written: nothing runs unaudited.
const CodeAuditUnavailable = "audit_unavailable"

// Auditor records every decision a responder takes. Audit must not block
// for long; it is called on the request path. An error means the record
// was not written: the responder refuses an action whose "started" record
// fails, and logs every other failure at error level.
type Auditor interface {
	Audit(rec *AuditRecord) error
}

// Audit decisions.
const (
	DecisionStarted    = "started"    // the action is about to run (written before it does)
	DecisionAccepted   = "accepted"   // the action ran; the record carries its result
	DecisionRefused    = "refused"    // the request was answered with a refusal
	DecisionDropped    = "dropped"    // the bytes were not a frame: not answered
	DecisionDuplicate  = "duplicate"  // a copy of a request already admitted here
	DecisionSuppressed = "suppressed" // unauthenticated messages counted, not recorded one by one
)

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
	// Approvers are the approvers counted under the two-person rule,
	// "NAME SHA256:...", for an action that needed approval.
	Approvers []string `json:"approvers,omitempty"`
	// Provenance is the request's: run id, ticket, CI build URL and the
	// reason of a rollback.
	Provenance *Provenance `json:"provenance,omitempty"`
	// Decision is one of the Decision constants: "started" before an
	// action runs, "accepted" with its result, "refused", "dropped",
	// "duplicate" and "suppressed".
	Decision   string `json:"decision"`
	Status     Status `json:"status,omitempty"`
	Code       string `json:"code,omitempty"`
	Reason     string `json:"reason,omitempty"`
	Changed    bool   `json:"changed,omitempty"`
	Summary    string `json:"summary,omitempty"`
	DurationMS int64  `json:"duration_ms"`
	Bytes      int    `json:"bytes"`
	// Suppressed counts, by code, the unauthenticated messages of a window
	// (from Time, DurationMS long) that were not recorded one by one.
	Suppressed map[string]int `json:"suppressed,omitempty"`
	// Unanswered counts the messages of that window that were owed a signed
	// refusal and got none (the refusals were rate-limited).
	Unanswered int `json:"unanswered,omitempty"`
	// Frame is the request frame as received, set once its signature
	// verified. It is not written as is: the audit log keeps it, or only
	// its signature and digest when a parameter is secret, so that the
	// signature can be checked again later (internal/audit.Signed).
	Frame []byte `json:"-"`
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
	// Trust, Handler and Audit are required. When Handler is also an
	// Authorizer, it is asked before a request takes replay-cache space.
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
	// ReplayCacheSize bounds remembered request ids; default 100000. Only
	// requests allowed to run are remembered.
	ReplayCacheSize int
	// ReplayKeyShare is the fraction of ReplayCacheSize one signing key may
	// hold, so one key cannot lock the others out; default 0.25.
	ReplayKeyShare float64
	// FloodWindow, FloodRecords and FloodReplies bound messages that do not
	// authenticate: per window (default 10s) only the first FloodRecords
	// (default 20) are audited and logged one by one and only the first
	// FloodReplies (default 20) get a signed refusal; the rest are counted
	// in one "suppressed" audit record and one log line per window.
	FloodWindow  time.Duration
	FloodRecords int
	FloodReplies int
	// Shards are the shard counts (internal/shard.Sizes) at which the
	// host also listens on its shard subject (ShardSubject), where a
	// client publishes a chunk of a large request once for its shard; the
	// host's registry entry must list exactly these (Registration.Shards).
	// Empty: no shard subjects.
	Shards []int
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Responder answers signed requests for one host identity.
type Responder struct {
	cfg    ResponderConfig
	log    *slog.Logger
	replay *replayCache
	flood  *floodGate
	// refusedFrames remembers recently refused signed frames, so copies
	// of one are counted rather than each audited and signed for.
	refusedFrames *digestRing
	certs         certCache // user certificates whose CA signature verified
	sem           chan struct{}
	started       time.Time

	mu       sync.Mutex
	subs     []*nats.Subscription
	inflight sync.WaitGroup
	closed   bool
	stop     chan struct{}
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
	if cfg.ReplayKeyShare <= 0 || cfg.ReplayKeyShare > 1 {
		cfg.ReplayKeyShare = 0.25
	}
	if cfg.FloodWindow <= 0 {
		cfg.FloodWindow = 10 * time.Second
	}
	if cfg.FloodRecords <= 0 {
		cfg.FloodRecords = 20
	}
	if cfg.FloodReplies <= 0 {
		cfg.FloodReplies = 20
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	perKey := max(1, int(float64(cfg.ReplayCacheSize)*cfg.ReplayKeyShare))
	return &Responder{
		cfg:           cfg,
		log:           log.With("identity", cfg.Node().Identity),
		replay:        newReplayCache(cfg.ReplayCacheSize, perKey),
		flood:         newFloodGate(cfg.FloodWindow, cfg.FloodRecords, cfg.FloodReplies),
		refusedFrames: newDigestRing(4096),
		sem:           make(chan struct{}, cfg.MaxConcurrent),
		started:       cfg.Now().Truncate(time.Millisecond), // requests carry milliseconds
		stop:          make(chan struct{}),
	}, nil
}

// Start subscribes to the host's direct subject, to the broadcast
// subject of each of its agents and to its shard subjects (a host that a
// request there does not name drops it unverified), and flushes the
// connection so the broker has the subscriptions before Start returns: a
// request sent as soon as the responder reports itself ready is not lost.
// When the connection is down (signetd started before the broker) the
// subscriptions are sent on connect.
func (r *Responder) Start() error {
	n := r.cfg.Node()
	subjects := []string{NodeSubject(r.cfg.Collective, n.Identity)}
	agents := append([]string(nil), n.Agents...)
	sort.Strings(agents)
	for _, a := range agents {
		subjects = append(subjects, AgentSubject(r.cfg.Collective, a))
	}
	for _, size := range r.cfg.Shards {
		subjects = append(subjects, ShardSubject(r.cfg.Collective, size, n.Identity))
	}
	r.mu.Lock()
	for _, s := range subjects {
		direct := s == subjects[0]
		sub, err := r.cfg.Conn.Subscribe(s, func(m *nats.Msg) { r.dispatch(m, direct) })
		if err != nil {
			r.mu.Unlock()
			return fmt.Errorf("subscribe %s: %w", s, err)
		}
		sub.SetPendingLimits(-1, 256<<20)
		r.subs = append(r.subs, sub)
	}
	r.mu.Unlock()
	go r.floodLoop()
	if r.cfg.Conn.IsConnected() {
		if err := r.cfg.Conn.FlushTimeout(10 * time.Second); err != nil && r.cfg.Conn.IsConnected() {
			return fmt.Errorf("send subscriptions to the broker: %w", err)
		}
	}
	return nil
}

// Shutdown stops taking requests and waits for in-flight actions to finish
// or for ctx to end. Counts of unauthenticated messages not yet written are
// audited.
func (r *Responder) Shutdown(ctx context.Context) error {
	r.mu.Lock()
	if !r.closed {
		close(r.stop)
	}
	r.closed = true
	for _, s := range r.subs {
		_ = s.Unsubscribe()
	}
	r.subs = nil
	r.mu.Unlock()
	r.writeSuppressed(r.flood.roll(r.cfg.Now(), true))
	done := make(chan struct{})
	go func() { r.inflight.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("shutdown: actions still running: %w", ctx.Err())
	}
}

// dispatch runs in the subscription's callback: the checks that need no
// action (size, parse, addressing, signature, freshness, policy, replay)
// run here, one message at a time per subscription, and only a request
// admitted to run gets a goroutine. A flood of messages that fail those
// checks therefore costs CPU time bounded by the callback, never an
// unbounded number of goroutines.
func (r *Responder) dispatch(m *nats.Msg, direct bool) {
	r.mu.Lock()
	closed := r.closed
	r.mu.Unlock()
	if closed {
		return
	}
	r.handle(m, direct)
}

func (r *Responder) floodLoop() {
	t := time.NewTicker(r.cfg.FloodWindow)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
			r.writeSuppressed(r.flood.roll(r.cfg.Now(), false))
		}
	}
}

// writeSuppressed writes a window's counts of unauthenticated messages as
// one audit record and one log line.
func (r *Responder) writeSuppressed(w *floodWindow) {
	if w == nil {
		return
	}
	total := 0
	for _, n := range w.counts {
		total += n
	}
	rec := &AuditRecord{Time: w.start, Identity: r.cfg.Node().Identity, Decision: DecisionSuppressed,
		Reason:     fmt.Sprintf("%d unauthenticated messages not recorded one by one", total),
		DurationMS: w.end.Sub(w.start).Milliseconds(), Suppressed: w.counts, Unanswered: w.unanswered}
	r.audit(rec)
	r.log.Warn("unauthenticated messages dropped or refused without individual records", "count", total, "by_code", w.counts,
		"unanswered", w.unanswered, "window", w.end.Sub(w.start).Round(time.Millisecond))
}

// audit writes a record that does not gate an action; a failure is logged
// at error level.
func (r *Responder) audit(rec *AuditRecord) {
	if err := r.cfg.Audit.Audit(rec); err != nil {
		r.log.Error("audit record not written", "request_id", rec.RequestID, "decision", rec.Decision, "err", err)
	}
}

// refusal is a request turned away before any action ran.
type refusal struct {
	code, reason string
}

// exchange is one message on its way through the responder.
type exchange struct {
	m     *nats.Msg
	node  *Node
	start time.Time
	rec   *AuditRecord
	req   *Request
	// digest is the frame's digest, set once its signature verified.
	digest string
}

// sign fills in the responder's part of a reply and signs it.
func (r *Responder) sign(x *exchange, rep *Reply) ([]byte, error) {
	rep.Version = replyVersion(x.req)
	rep.Identity = x.node.Identity
	rep.Time = r.cfg.Now().UnixMilli()
	rep.DurationMS = x.rec.DurationMS
	if x.req != nil {
		rep.RequestID, rep.Agent, rep.Action = x.req.ID, x.req.Agent, x.req.Action
	}
	bindReply(rep, x.m.Data)
	return SignReply(r.cfg.HostKey, rep)
}

func (r *Responder) send(x *exchange, frame []byte) {
	if x.m.Reply == "" || frame == nil {
		return
	}
	if err := x.m.Respond(frame); err != nil {
		r.log.Warn("send reply", "request_id", x.rec.RequestID, "err", err)
	}
}

// answer audits x and sends rep, signed; it returns the signed frame.
func (r *Responder) answer(x *exchange, rep *Reply) []byte {
	x.rec.DurationMS = r.cfg.Now().Sub(x.start).Milliseconds()
	r.audit(x.rec)
	if rep == nil || x.m.Reply == "" {
		return nil
	}
	frame, err := r.sign(x, rep)
	if err != nil {
		r.log.Error("sign reply", "request_id", x.rec.RequestID, "err", err)
		return nil
	}
	r.send(x, frame)
	return frame
}

// refuse answers an authenticated request with a refusal.
func (r *Responder) refuse(x *exchange, f refusal) {
	x.rec.Decision, x.rec.Status, x.rec.Code, x.rec.Reason = DecisionRefused, StatusRefused, f.code, f.reason
	r.log.Info("request refused", "request_id", x.rec.RequestID, "code", f.code, "reason", redact.String(f.reason), "sender", x.rec.User)
	r.answer(x, &Reply{Status: StatusRefused, Code: f.code, Error: f.reason})
}

// limited records and answers a message within the flood gate's
// allowance: one that did not authenticate, or a copy of a signed frame
// (anyone on the broker can republish a frame they saw, as often as they
// like). decision is refused, dropped (nothing to answer to) or duplicate;
// kept, when set, is a signed reply to send again, which costs no signing
// and is always sent.
func (r *Responder) limited(x *exchange, decision string, f refusal, kept []byte) {
	key := f.code
	if key == "" {
		key = decision
	}
	wantReply := decision != DecisionDropped && x.m.Reply != "" && kept == nil
	record, reply, prev := r.flood.note(key, wantReply, x.start)
	r.writeSuppressed(prev)
	x.rec.Decision, x.rec.Code, x.rec.Reason = decision, f.code, f.reason
	if f.code != "" {
		x.rec.Status = StatusRefused
	}
	if record {
		x.rec.DurationMS = r.cfg.Now().Sub(x.start).Milliseconds()
		r.audit(x.rec)
		r.log.Warn("message "+decision, "subject", x.m.Subject, "request_id", x.rec.RequestID,
			"code", f.code, "reason", redact.String(f.reason), "sender", x.rec.User)
	}
	if kept != nil {
		r.send(x, kept)
		return
	}
	if reply {
		frame, err := r.sign(x, &Reply{Status: StatusRefused, Code: f.code, Error: f.reason})
		if err != nil {
			r.log.Error("sign reply", "request_id", x.rec.RequestID, "err", err)
			return
		}
		r.send(x, frame)
	}
}

// refuseSigned refuses a request whose signature verified. The first
// refusal of a frame is audited and answered; copies of it (a replayed
// frame) go through the flood gate.
func (r *Responder) refuseSigned(x *exchange, f refusal) {
	if r.refusedFrames.repeat(x.digest) {
		r.limited(x, DecisionRefused, f, nil)
		return
	}
	r.refuse(x, f)
}

// handle takes one message through every check that needs no action and,
// when the request may run, starts it on its own goroutine.
func (r *Responder) handle(m *nats.Msg, direct bool) {
	start := r.cfg.Now()
	node := r.cfg.Node()
	x := &exchange{m: m, node: node, start: start,
		rec: &AuditRecord{Time: start, Identity: node.Identity, Subject: m.Subject, Bytes: len(m.Data)}}

	if len(m.Data) > r.cfg.MaxRequestBytes {
		r.limited(x, DecisionRefused, refusal{CodeTooLarge, fmt.Sprintf("request is %d bytes, this host accepts at most %d", len(m.Data), r.cfg.MaxRequestBytes)}, nil)
		return
	}
	// A broadcast names its targets inside the request. A cheap look at
	// the bytes first: a frame that does not contain this host's quoted
	// identity cannot name it.
	mayName := direct || bytes.Contains(m.Data, []byte(`"`+node.Identity+`"`))
	req, opened, err := ParseRequest(m.Data)
	if req == nil {
		// Not even a frame: nothing to answer to.
		r.limited(x, DecisionDropped, refusal{CodeMalformed, err.Error()}, nil)
		return
	}
	// Then the exact check, and the filter, still before any signature
	// verify: a host that is not addressed drops the broadcast silently.
	// Dropping on unverified fields is safe: changing them breaks the
	// signature, so only a forged copy can be dropped this way.
	if !direct {
		if len(req.Targets) > 0 && (!mayName || !slices.Contains(req.Targets, node.Identity)) {
			return
		}
		if f := r.checkAddress(req, node, false); f != nil && f.code == "" {
			return
		}
	}
	x.req = req
	x.rec.RequestID, x.rec.User, x.rec.Key = req.ID, req.Sender.User, req.Sender.Key
	x.rec.Agent, x.rec.Action, x.rec.Params = req.Agent, req.Action, req.Params
	if err := CheckID(req.ID); err != nil {
		r.limited(x, DecisionRefused, refusal{CodeMalformed, err.Error()}, nil)
		return
	}
	if err := req.Provenance.Check(); err != nil {
		r.limited(x, DecisionRefused, refusal{CodeMalformed, err.Error()}, nil)
		return
	}
	x.rec.Provenance = req.Provenance
	if err != nil {
		r.limited(x, DecisionRefused, refusal{CodeBadSignature, "malformed signature: " + err.Error()}, nil)
		return
	}
	principal, f := r.authenticate(req, opened)
	if f != nil {
		r.limited(x, DecisionRefused, *f, nil)
		return
	}
	x.digest = FrameDigest(m.Data)
	x.rec.Principal, x.rec.Roles, x.rec.Frame = principal.Name, principal.Roles, m.Data
	now := r.cfg.Now()
	if f := r.checkRequest(req, node, direct, now); f != nil {
		if f.code == "" { // not for this host: stay silent, as a broadcast expects
			return
		}
		r.refuseSigned(x, *f)
		return
	}
	deadline := req.CreatedTime().Add(time.Duration(req.TTL) * time.Second).Add(r.cfg.ClockSkew)
	call := &Call{Request: req, Principal: principal, Direct: direct}
	if az, ok := r.cfg.Handler.(Authorizer); ok {
		actx, cancel := context.WithDeadline(context.Background(), deadline)
		rep := az.Authorize(actx, call)
		cancel()
		if rep != nil {
			if r.refusedFrames.repeat(x.digest) {
				r.limited(x, DecisionRefused, refusal{rep.Code, rep.Error}, nil)
				return
			}
			r.refuse(x, refusal{rep.Code, rep.Error})
			return
		}
	}
	x.rec.Approvers = call.Approvers
	state, kept, err := r.replay.admit(req.ID, x.digest, principal.Fingerprint, deadline, now)
	switch state {
	case seenRejected:
		reason := "too many requests in flight to check for replays; retry later"
		if errors.Is(err, ErrReplayKeyQuota) {
			reason = fmt.Sprintf("key %s has its share of this host's replay cache in flight; retry when some of its requests have expired", principal.Fingerprint)
		}
		r.refuseSigned(x, refusal{CodeBusy, reason})
		return
	case seenReplay:
		r.refuseSigned(x, refusal{CodeReplay, fmt.Sprintf("request id %s was already seen with other content, or its reply is no longer kept (replay)", req.ID)})
		return
	case seenRunning:
		// Copies of an admitted frame can come from anyone on the broker:
		// recorded and answered within the flood gate's allowance.
		r.limited(x, DecisionDuplicate, refusal{CodeInProgress, fmt.Sprintf("request %s is already running on this host; its reply will follow", req.ID)}, nil)
		return
	case seenDone:
		x.rec.Status = ""
		r.limited(x, DecisionDuplicate, refusal{"", "a copy of a request that already ran: its signed reply sent again"}, kept)
		return
	}

	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		r.replay.forget(req.ID)
		return
	}
	r.inflight.Add(1)
	r.mu.Unlock()
	go func() {
		defer r.inflight.Done()
		r.run(x, call, deadline)
	}()
}

// run waits for an action slot, records that the action starts, runs it,
// and records and sends its result.
func (r *Responder) run(x *exchange, call *Call, deadline time.Time) {
	req := x.req
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	select {
	case r.sem <- struct{}{}:
	case <-ctx.Done():
		r.replay.forget(req.ID)
		r.refuse(x, refusal{CodeBusy, fmt.Sprintf("%d actions already running on this host; none finished before the request expired", cap(r.sem))})
		return
	}
	started := *x.rec
	started.Decision, started.Time = DecisionStarted, r.cfg.Now()
	if err := r.cfg.Audit.Audit(&started); err != nil {
		<-r.sem
		r.replay.forget(req.ID)
		r.log.Error("audit record not written: action refused", "request_id", req.ID, "agent", req.Agent, "action", req.Action, "err", err)
		r.refuse(x, refusal{CodeAuditUnavailable, "this host cannot write its audit log, so it runs nothing: " + err.Error()})
		return
	}
	rep := r.cfg.Handler.Handle(ctx, call)
	<-r.sem
	if rep == nil {
		rep = &Reply{Status: StatusFailed, Code: CodeFailed, Error: "handler returned no result"}
	}
	x.rec.Status, x.rec.Code, x.rec.Reason, x.rec.Changed, x.rec.Summary = rep.Status, rep.Code, rep.Error, rep.Changed, rep.Summary
	x.rec.Decision = DecisionAccepted
	if rep.Status == StatusRefused {
		x.rec.Decision = DecisionRefused
	}
	frame := r.answer(x, rep)
	r.replay.finish(req.ID, frame)
}

// authenticate checks the signature and finds the trusted principal.
func (r *Responder) authenticate(req *Request, o *Opened) (*Principal, *refusal) {
	if o.Sig.Namespace != RequestNamespace {
		return nil, &refusal{CodeBadSignature, fmt.Sprintf("signature namespace is %q, want %q", o.Sig.Namespace, RequestNamespace)}
	}
	var p *Principal
	ok := false
	if req.Sender.Cert != "" {
		var f *refusal
		if p, f = r.authenticateCert(req, o); f != nil {
			return nil, f
		}
		ok = true
	} else {
		p, ok = r.cfg.Trust.LookupKey(o.Sig.PublicKey)
	}
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
	if err := checkRequestVersion(req.Version); err != nil {
		return &refusal{CodeVersion, err.Error()}
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
	return r.checkAddress(req, node, direct)
}

// checkAddress checks that the request is for this host: a direct request
// must name it, a broadcast that names targets must name it, and the
// filter must match. A refusal with an empty code means a broadcast for
// other hosts, dropped silently. It needs no verified signature.
func (r *Responder) checkAddress(req *Request, node *Node, direct bool) *refusal {
	named := len(req.Targets) == 0 || slices.Contains(req.Targets, node.Identity)
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
