package bus

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/signetbus/signet/internal/sshsig"
)

// Sizing of target lists (see "Targets and large fleets" in the package
// documentation).
const (
	// maxBroadcastTargetBytes bounds the encoded target list of a request
	// published once on a broadcast subject: every host with the agent
	// receives, and every named host parses and hashes, the whole list, so
	// a long list costs the fleet O(hosts²); beyond it each host gets a
	// chunk on its own subject.
	maxBroadcastTargetBytes = 2 << 10
	// directChunk is how many hosts one signed request names when the
	// targets are too many for one broadcast and each host is sent its
	// chunk on its own subject.
	directChunk = 64
	// maxReconnectResends bounds how often a request is sent again to the
	// hosts that have not answered after the connection to the broker was
	// re-established. Resends after a "no responders" status are bounded
	// by the timeout and the backoff instead.
	maxReconnectResends = 3
	// maxReconnectFollowups is how many more times, after the immediate
	// resend, a request is sent again to hosts still silent after a
	// reconnect (see followupDelay). A host that already ran it answers
	// with its kept reply; none runs it twice.
	maxReconnectFollowups = 3
)

// targetBytes is the size of targets in a request's JSON.
func targetBytes(targets []string) int {
	n := 0
	for _, t := range targets {
		n += len(t) + 3 // quotes and comma
	}
	return n
}

// chunks splits the hosts of one call into signed requests: one request
// published once on the agent subject when its target list is small
// enough (or for an open broadcast, targets empty), otherwise requests of
// directChunk hosts, each sent to its hosts' own subjects.
func chunks(targets []string, broadcast bool) (out [][]string, once bool) {
	if len(targets) == 0 || (broadcast && targetBytes(targets) <= maxBroadcastTargetBytes) {
		return [][]string{targets}, true
	}
	for i := 0; i < len(targets); i += directChunk {
		out = append(out, targets[i:min(i+directChunk, len(targets))])
	}
	return out, false
}

// hostState is what one call knows about one host.
type hostState struct {
	sent *sentRequest // the request naming the host; nil if none did
	// result is the index in Outcome.Results of the host's final result,
	// or -1.
	result int
	frame  []byte // the signed reply frame of that result
	// tentative is a non-final refusal (replay, in progress): reported
	// only if nothing else arrives.
	tentative    *Result
	inbox        string
	noResponders bool
	resends      int // after "no responders"
	reconnects   int // after a reconnect
	// followups are the resends still scheduled after a reconnect: the
	// hosts reconnect to the broker on their own schedule, often after
	// the client, and a broadcast sent before they resubscribed reaches
	// nobody and earns no "no responders" status.
	followups int
	resendAt  time.Time
	// direct is set when a host whose chunk went to its shard subject is
	// sent it on its own subject instead: it did not answer within a
	// third of the timeout while most of its chunk did, or nobody listens
	// on the shard subject (deafShard).
	direct    bool
	deafShard bool
}

// reply is a reply checked by a verifier.
type reply struct {
	r     Result
	frame []byte
	sent  *sentRequest // the request it is bound to; nil if none
	// unbound says why a verified reply does not answer any request of
	// this call.
	unbound error
	// noResponders is set for the broker's "no responders" status; inbox
	// tells which publish it answers.
	noResponders bool
	inbox        string
}

// nonFinal reports whether a refusal leaves the host pending: the host
// saw this signed request before (replay) or is still running it.
func nonFinal(rep *Reply) bool {
	return rep != nil && rep.Status == StatusRefused && (rep.Code == CodeReplay || rep.Code == CodeInProgress)
}

// send signs the requests of one call and collects replies until every
// named host has given a final answer or the timeout passes. With targets
// empty (discovery) it collects until the timeout.
func (c *Client) send(ctx context.Context, q Query, targets []string, broadcast bool, out *Outcome, start time.Time) error {
	box, err := c.replies.open()
	if err != nil {
		return err
	}
	defer box.close()

	var sent []*sentRequest
	byID := map[string]*sentRequest{}
	byDigest := map[string]*sentRequest{}
	hosts := make(map[string]*hostState, len(targets))
	byInbox := map[string][]string{}
	parts, once := chunks(targets, broadcast)
	// Chunks for hosts that listen on shard subjects go out once per
	// shard (shardplan.go); the rest to each host's own subject.
	var shardParts []shardChunk
	if !once && broadcast && q.plan != nil {
		var rest []string
		shardParts, rest = q.plan.split(c.cfg.Collective, targets)
		parts = nil
		if len(rest) > 0 {
			parts, _ = chunks(rest, false)
		}
	}
	viaShard := map[*sentRequest]bool{}
	shardInbox := map[string]bool{}
	answered := map[*sentRequest]int{} // final results per shard chunk
	for _, sc := range shardParts {
		parts = append(parts, sc.targets)
	}
	for i, chunk := range parts {
		req := &Request{
			Version:    c.signIn(q),
			ID:         NewID(),
			Sender:     Sender{User: c.cfg.User, Key: c.fp},
			Collective: c.cfg.Collective,
			Agent:      q.Agent,
			Action:     q.Action,
			Params:     q.Params,
			Filter:     q.Filter,
			Targets:    chunk,
			Created:    c.cfg.Now().UnixMilli(),
			TTL:        int((q.TTL + time.Second - 1) / time.Second),
			Approval:   q.Approval,
			Provenance: q.Provenance,
		}
		if req.Version < 2 {
			// Protocol 1 had no provenance, and its hosts refuse a field
			// they do not know: a host of the previous release gets the
			// step without it (its audit lacks the run and the ticket).
			req.Provenance = nil
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
		s := &sentRequest{req: req, frame: frame, digest: FrameDigest(frame), targets: chunk}
		if once {
			s.subject = AgentSubject(c.cfg.Collective, q.Agent)
			s.inbox = box.add()
			byInbox[s.inbox] = chunk
		}
		if j := i - (len(parts) - len(shardParts)); j >= 0 {
			s.subject = shardParts[j].subject
			s.inbox = box.add()
			byInbox[s.inbox] = chunk
			viaShard[s], shardInbox[s.inbox] = true, true
		}
		for _, t := range chunk {
			st := &hostState{sent: s, result: -1, inbox: s.inbox}
			if s.subject == "" || viaShard[s] { // its own inbox: the fallback goes to its own subject
				st.inbox = box.add()
				byInbox[st.inbox] = []string{t}
			}
			hosts[t] = st
		}
		sent = append(sent, s)
		byID[req.ID] = s
		byDigest[s.digest] = s
	}
	open := len(targets) == 0
	pending := len(targets)

	publish := func(s *sentRequest, host string) error {
		if s.subject != "" && (host == "" || !hosts[host].direct) {
			if err := c.cfg.Conn.PublishMsg(&nats.Msg{Subject: s.subject, Reply: s.inbox, Data: s.frame}); err != nil {
				return fmt.Errorf("publish: %w", err)
			}
			return nil
		}
		if err := c.cfg.Conn.PublishMsg(&nats.Msg{Subject: NodeSubject(c.cfg.Collective, host), Reply: hosts[host].inbox, Data: s.frame}); err != nil {
			return fmt.Errorf("publish to %s: %w", host, err)
		}
		return nil
	}
	reconnects := c.cfg.Conn.Stats().Reconnects
	sentAt := c.cfg.Now()
	for _, s := range sent {
		if s.subject != "" {
			if err := publish(s, ""); err != nil {
				return err
			}
			continue
		}
		for _, t := range s.targets {
			if err := publish(s, t); err != nil {
				return err
			}
		}
	}

	add := func(r Result) int {
		out.Results = append(out.Results, r)
		if q.OnResult != nil {
			q.OnResult(r)
		}
		return len(out.Results) - 1
	}
	// Replies are verified on every core: with thousands of hosts the
	// client's signature checks would otherwise be the bottleneck.
	results := make(chan reply, 1024)
	wctx, stop := context.WithCancel(context.Background())
	var workers sync.WaitGroup
	defer func() { stop(); workers.Wait() }()
	nworkers := runtime.GOMAXPROCS(0)
	if !open {
		nworkers = min(nworkers, len(targets))
	}
	for range nworkers {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for {
				m, ok := box.q.next(wctx)
				if !ok {
					return // stopped
				}
				var rp reply
				if len(m.Data) == 0 && m.Header.Get("Status") != "" {
					if m.Header.Get("Status") != "503" {
						continue
					}
					rp = reply{noResponders: true, inbox: m.Subject}
				} else {
					rp = c.checkReply(m.Data, byID, byDigest)
					rp.r.Elapsed = c.cfg.Now().Sub(sentAt)
				}
				select {
				case results <- rp:
				case <-wctx.Done():
					return
				}
			}
		}()
	}

	timer := time.NewTimer(q.Timeout)
	defer timer.Stop()
	// The ticker notices broker reconnects and due resends.
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	unexpected := map[string][]byte{}
	warned := map[string]bool{}
	due := 0 // hosts with a resend scheduled
	unschedule := func(st *hostState) {
		if !st.resendAt.IsZero() {
			st.resendAt = time.Time{}
			due--
		}
	}
	schedule := func(st *hostState, at time.Time) {
		if st.resendAt.IsZero() {
			due++
		}
		st.resendAt = at
	}
	// fired is called when a host's scheduled resend went out (or went out
	// for it, with a broadcast): it schedules the next follow-up, if any.
	fired := func(st *hostState) {
		unschedule(st)
		if st.followups > 0 && st.result < 0 {
			st.followups--
			schedule(st, c.cfg.Now().Add(followupDelay(maxReconnectFollowups-st.followups)))
		}
	}
	resend := func(st *hostState, host string) error {
		fired(st)
		return publish(st.sent, host)
	}
	// A host sent its chunk on its shard subject that has not answered
	// within a third of the timeout, while at least half of its chunk
	// has, is sent it on its own subject: its broker may have refused it
	// the shard subscription, and only its own subject tells "not
	// connected" (no responders) apart from slow. A host that already ran
	// it answers with its kept reply. While most of the chunk is silent
	// too, the hosts are slow, not deaf: sending them all their chunks
	// again would undo what the shard saved.
	for _, st := range hosts {
		if viaShard[st.sent] {
			schedule(st, sentAt.Add(q.Timeout/3))
		}
	}
wait:
	for open || pending > 0 {
		select {
		case rp := <-results:
			switch {
			case rp.noResponders && shardInbox[rp.inbox]:
				// Nobody listens on the shard subject: each host is sent
				// its chunk on its own subject now.
				for _, h := range byInbox[rp.inbox] {
					if st := hosts[h]; st.result < 0 && !st.direct {
						st.deafShard = true
						schedule(st, c.cfg.Now())
					}
				}
			case rp.noResponders:
				// Nobody listened on the subject of that publish: the host
				// is not (yet) connected. Send again with backoff.
				for _, h := range byInbox[rp.inbox] {
					st := hosts[h]
					if st.result >= 0 || !st.resendAt.IsZero() {
						continue
					}
					st.noResponders = true
					st.resendAt = c.cfg.Now().Add(backoff(st.resends))
					due++
					st.resends++
				}
			case rp.r.Status == ResultForged || rp.r.Status == ResultUnknownHost:
				// Never satisfies an expected host: the real one may still answer.
				add(rp.r)
			case rp.unbound != nil:
				id := rp.r.Identity
				c.log.Warn("reply does not answer this request", "identity", id, "err", rp.unbound)
				if !warned[id] {
					warned[id] = true
					out.Warnings = append(out.Warnings, fmt.Sprintf("a reply that does not answer this request was received from %s: possible tampering (%v)", id, rp.unbound))
				}
			default:
				id := rp.r.Identity
				st := hosts[id]
				if st == nil && open {
					st = &hostState{sent: rp.sent, result: -1}
					hosts[id] = st
				}
				if st == nil || st.sent != rp.sent {
					// A host the request did not name ran it (or says so).
					if prev, dup := unexpected[id]; dup && bytes.Equal(prev, rp.frame) {
						continue
					}
					unexpected[id] = rp.frame
					r := rp.r
					r.Status, r.Error = ResultUnexpected, fmt.Sprintf("%s answered %s (%s) but the request did not name it: it is not in the registry or the targets", id, rp.r.Status, rp.r.Error)
					add(r)
					continue
				}
				if nonFinal(rp.r.Reply) {
					if viaShard[st.sent] && !st.direct {
						unschedule(st) // it got the shard's chunk
					}
					if st.tentative == nil {
						r := rp.r
						st.tentative = &r
					}
					continue
				}
				if st.result < 0 {
					unschedule(st)
					st.frame = rp.frame
					st.result = add(rp.r)
					answered[st.sent]++
					if !open {
						pending--
					}
					continue
				}
				if bytes.Equal(st.frame, rp.frame) {
					continue // the same signed reply again
				}
				// Two different final answers signed by the host for one
				// request: neither can be trusted to be the outcome.
				c.log.Warn("conflicting signed replies", "identity", id, "request_id", rp.sent.req.ID)
				r := Result{Identity: id, Status: ResultFailed, Reply: out.Results[st.result].Reply, Elapsed: rp.r.Elapsed,
					Error: "conflicting signed replies from " + id}
				out.Results[st.result] = r
				if q.OnResult != nil {
					q.OnResult(r)
				}
			}
		case <-tick.C:
			now := c.cfg.Now()
			if n := c.cfg.Conn.Stats().Reconnects; n != reconnects && c.cfg.Conn.IsConnected() {
				// The request or its reply may have been lost with the
				// old connection: send the same signed frame again to the
				// hosts that have not answered. A host that ran it
				// answers the same again, one that never got it runs it.
				reconnects = n
				again := map[*sentRequest]bool{}
				for h, st := range hosts {
					if st.result >= 0 || st.sent == nil || st.reconnects >= maxReconnectResends {
						continue
					}
					st.reconnects++
					st.followups = maxReconnectFollowups
					fired(st)                                // schedules the first follow-up
					if st.sent.subject != "" && !st.direct { // a broadcast goes out once for all its hosts
						if again[st.sent] {
							continue
						}
						again[st.sent] = true
					}
					if err := publish(st.sent, h); err != nil {
						return err
					}
				}
				continue
			}
			again := map[*sentRequest]bool{}
			for h, st := range hosts {
				if due == 0 {
					break
				}
				if st.resendAt.IsZero() || now.Before(st.resendAt) {
					continue
				}
				if viaShard[st.sent] && !st.direct {
					if !st.deafShard && 2*answered[st.sent] < len(st.sent.targets) {
						st.resendAt = now.Add(q.Timeout / 6) // its chunk is slow: look again later
						continue
					}
					st.direct = true // from now on, its own subject
				} else if st.sent.subject != "" && !st.direct { // a broadcast goes out once for all its hosts
					if again[st.sent] {
						fired(st)
						continue
					}
					again[st.sent] = true
				}
				if err := resend(st, h); err != nil {
					return err
				}
			}
		case <-timer.C:
			break wait
		case <-ctx.Done():
			break wait
		}
	}
	missing := make([]string, 0, pending)
	for id, st := range hosts {
		if st.result < 0 && (st.sent != nil || st.tentative != nil) {
			missing = append(missing, id)
		}
	}
	sort.Strings(missing)
	now := c.cfg.Now()
	why := fmt.Sprintf("no response within %s of sending (%s since the query started)", now.Sub(sentAt).Round(time.Millisecond), now.Sub(start).Round(time.Millisecond))
	if ctx.Err() != nil {
		why = "interrupted before the host answered"
	}
	for _, id := range missing {
		st := hosts[id]
		switch {
		case st.tentative != nil:
			add(*st.tentative)
		case open:
		case st.noResponders && ctx.Err() == nil:
			add(Result{Identity: id, Status: ResultNoResponse, Error: fmt.Sprintf("no responders: nothing listens on %s's subject, the host is not connected (sent %s in %s)", id, times(st.resends+st.reconnects+1), now.Sub(sentAt).Round(time.Millisecond))})
		default:
			add(Result{Identity: id, Status: ResultNoResponse, Error: why})
		}
	}
	return ctx.Err()
}

// followupDelay is the wait before the n-th follow-up resend (from 1)
// after a reconnect: 1s, 2s, 4s, spanning signetd's own reconnect delay
// (about a second, with jitter) and its resubscription.
func followupDelay(n int) time.Duration {
	return time.Second << (n - 1)
}

// backoff is the wait before the n-th resend after "no responders": a
// responder reconnecting to a restarted broker may take a few seconds.
func backoff(n int) time.Duration {
	return min(250*time.Millisecond<<n, 2*time.Second)
}

// checkReply verifies a reply frame and finds the request it answers.
func (c *Client) checkReply(frame []byte, byID, byDigest map[string]*sentRequest) reply {
	r, rep := c.verifySigned(frame)
	if rep == nil {
		return reply{r: r}
	}
	s := byID[rep.RequestID]
	if s == nil && rep.RequestID == "" {
		s = byDigest[rep.RequestDigest]
	}
	if s == nil {
		err := CheckID(rep.RequestID)
		if err == nil {
			err = fmt.Errorf("it answers request %s", rep.RequestID)
		}
		return reply{r: r, unbound: err}
	}
	if err := checkBinding(rep, s); err != nil {
		return reply{r: r, unbound: err}
	}
	return reply{r: r, frame: frame, sent: s}
}

// verifySigned checks a reply frame's signature against the host keys. It
// returns the reply only when the signature is the host's.
func (c *Client) verifySigned(frame []byte) (Result, *Reply) {
	rep, opened, err := ParseReply(frame)
	if rep == nil {
		return Result{Identity: "?", Status: ResultForged, Error: "unparseable reply: " + err.Error()}, nil
	}
	id := rep.Identity
	if id == "" {
		id = "?"
	}
	if err != nil {
		return Result{Identity: id, Status: ResultForged, Error: "reply signature malformed: " + err.Error()}, nil
	}
	pub, ok := c.cfg.HostKeys.Lookup(rep.Identity)
	if (!ok || string(opened.Sig.PublicKey) != string(pub.Marshal())) && rep.HostCert != "" {
		// Not the pinned key: the host certificate must vouch for it.
		if pub, err = verifyHostCert(c.cfg.HostKeys, rep.Identity, rep.HostCert, opened.Sig.PublicKey, c.cfg.Now(), hostCertSkew); err != nil {
			if errors.Is(err, ErrHostCA) {
				return Result{Identity: id, Status: ResultUnknownHost, Error: err.Error()}, nil
			}
			return Result{Identity: id, Status: ResultForged, Error: err.Error()}, nil
		}
		ok = true
	}
	if !ok {
		return Result{Identity: id, Status: ResultUnknownHost, Error: unknownHostError(id) + "; reply not trusted"}, nil
	}
	if opened.Sig.Namespace != ReplyNamespace {
		return Result{Identity: id, Status: ResultForged, Error: "reply signed for namespace " + opened.Sig.Namespace}, nil
	}
	if string(opened.Sig.PublicKey) != string(pub.Marshal()) {
		return Result{Identity: id, Status: ResultForged, Error: "reply signed by a key that is not " + id + "'s host key"}, nil
	}
	if err := opened.Sig.VerifyWith(pub, opened.Envelope.Payload); err != nil {
		if errors.Is(err, sshsig.ErrBadSig) {
			return Result{Identity: id, Status: ResultForged, Error: "reply signature does not verify"}, nil
		}
		return Result{Identity: id, Status: ResultForged, Error: err.Error()}, nil
	}
	r := Result{Identity: id, Reply: rep}
	if err := checkReplyVersion(rep.Version); err != nil {
		// Signed by the host, but in a protocol this client does not
		// speak: the host's answer, and a failure.
		r.Status, r.Error = ResultFailed, err.Error()
		return r, rep
	}
	switch rep.Status {
	case StatusOK:
		r.Status = ResultOK
	case StatusRefused:
		r.Status, r.Error = ResultRefused, rep.Error
	default:
		r.Status, r.Error = ResultFailed, rep.Error
	}
	return r, rep
}

func times(n int) string {
	if n == 1 {
		return "once"
	}
	return fmt.Sprintf("%d times", n)
}
