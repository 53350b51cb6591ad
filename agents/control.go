package agents

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/crypto/ssh"

	"github.com/signetbus/signet/bus"
	"github.com/signetbus/signet/bus/control"
	"github.com/signetbus/signet/internal/replicas"
	"github.com/signetbus/signet/internal/trustfile"
	"github.com/signetbus/signet/plugins"
)

// Audit decisions of control documents: one record per lock set or lifted
// and per revocation added or withdrawn, on every host that applies the
// document; a document the host does not accept is audited as refused
// with CodeControlRefused.
const (
	DecisionLock     = "lock"
	DecisionUnlock   = "unlock"
	DecisionRevoke   = "revoke"
	DecisionUnrevoke = "unrevoke"
	// CodeControlRefused marks a control document this host refused.
	CodeControlRefused = "control_refused"
)

// controlState is a host's revocations (from its revoked_keys file and the
// broker) and locks (from the broker).
type controlState struct {
	revokedPath string
	statePath   string
	// loading is set while the saved state is applied at start-up, which
	// must not write (signetd --check has no side effects).
	loading bool
	maxAge  time.Duration
	skew    time.Duration
	now     func() time.Time

	// fileRevoked maps fingerprints of revoked_keys to their line.
	fileRevoked atomic.Pointer[map[string]int]

	mu sync.Mutex // serializes applying documents
	// saveMu serializes writes of the state file; saveCh wakes the saver
	// goroutine while a watch runs (saving then never delays the next
	// document: an fsync on a busy disk can take long), and saving is
	// set while it runs.
	saveMu sync.Mutex
	saveCh chan struct{}
	saving atomic.Bool
	// refusedWindow and refusedCount bound the audit records of refused
	// documents: anyone who can write the bucket can write many.
	refusedWindow time.Time
	refusedCount  int
	// revoked and locks are the last accepted documents with their frames.
	revoked, locks atomic.Pointer[acceptedDoc]
}

type acceptedDoc struct {
	doc    *control.Document
	frame  []byte
	signer string // the signing key's name in the trust file
}

func (c *controlState) init(o HostOptions) {
	c.saveCh = make(chan struct{}, 1)
	c.revokedPath, c.statePath, c.maxAge, c.skew, c.now = o.RevokedKeys, o.ControlState, o.RevocationMaxAge, o.ClockSkew, time.Now
	if c.maxAge <= 0 {
		c.maxAge = 24 * time.Hour
	}
	if c.skew <= 0 {
		c.skew = 30 * time.Second
	}
}

// loadRevokedKeys reads a revoked_keys file: public keys one per line, as
// OpenSSH's RevokedKeys accepts them (binary KRLs are not read). It returns
// the revoked fingerprints with their line numbers; an empty path gives
// none.
func loadRevokedKeys(path string) (*map[string]int, error) {
	out := map[string]int{}
	if path == "" {
		return &out, nil
	}
	b, err := trustfile.ReadFile(path, trustfile.Options{What: "revoked keys"})
	if err != nil {
		return nil, fmt.Errorf("revoked keys: %w", err)
	}
	if bytes.HasPrefix(b, []byte("SSHKRL")) {
		return nil, fmt.Errorf("revoked keys %s: a binary KRL; signetd reads the plain list of public keys (one per line)", path)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
		if err != nil {
			return nil, fmt.Errorf("revoked keys %s:%d: not a public key: %w", path, n, err)
		}
		if c, ok := pub.(*ssh.Certificate); ok {
			pub = c.Key // a listed certificate revokes its key, as in OpenSSH
		}
		out[ssh.FingerprintSHA256(pub)] = n
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("revoked keys %s: %w", path, err)
	}
	return &out, nil
}

// subjectOf is what the revocation list is matched against for a caller.
// A certificate adds its key ID, serial and CA, so a certificate can be
// revoked before it expires by any of them.
func subjectOf(p *bus.Principal) control.Subject {
	s := control.Subject{Key: p.Fingerprint}
	if c := p.Cert; c != nil {
		s.Cert, s.KeyID, s.Serial = true, c.KeyId, c.Serial
		s.CA = ssh.FingerprintSHA256(c.SignatureKey)
	}
	return s
}

// revocation reports why s is revoked, or "".
func (h *Host) revocation(s control.Subject) string {
	if m := h.ctl.fileRevoked.Load(); m != nil {
		if n, ok := (*m)[s.Key]; ok {
			return fmt.Sprintf("revoked: key %s is listed in %s line %d", s.Key, h.ctl.revokedPath, n)
		}
	}
	if a := h.ctl.revoked.Load(); a != nil {
		if r, ok := a.doc.Match(s); ok {
			return fmt.Sprintf("revoked: %s revoked by admin %s at %s: %s", r.What(), r.By, stamp(r.At), r.Reason)
		}
	}
	return ""
}

func stamp(ms int64) string { return time.UnixMilli(ms).UTC().Format(time.RFC3339) }

// checkControl refuses a call from a revoked signer, from a caller whose
// roles need a fresh revocation list the host does not have, and within a
// lock's scope. Actions already running are not affected.
func (h *Host) checkControl(call *bus.Call) *bus.Reply {
	refuse := func(code, msg string) *bus.Reply {
		return &bus.Reply{Status: bus.StatusRefused, Code: code, Error: msg}
	}
	if why := h.revocation(subjectOf(call.Principal)); why != "" {
		return refuse(control.CodeRevoked, why)
	}
	if pol := h.policy.Load(); pol.NeedsFreshRevocations(call.Principal.Roles) {
		// Both documents: a broker that withholds a new lock keeps a
		// locked-out change running as surely as a withheld revocation.
		for _, d := range []struct {
			what string
			a    *acceptedDoc
		}{{"revocation list", h.ctl.revoked.Load()}, {"lock set", h.ctl.locks.Load()}} {
			if d.a == nil {
				return refuse(control.CodeStaleRevocations, fmt.Sprintf("this host has no %s from the broker, and roles %s need one younger than %s (revocation_max_age): an admin publishes one with `signet revoke --refresh`",
					d.what, strings.Join(call.Principal.Roles, " "), h.ctl.maxAge))
			}
			if age := h.ctl.now().Sub(d.a.doc.IssuedTime()); age > h.ctl.maxAge {
				return refuse(control.CodeStaleRevocations, fmt.Sprintf("this host's %s from the broker is %s old (seq %d, signed by %s at %s), and roles %s need one younger than %s (revocation_max_age): an admin re-signs it with `signet revoke --refresh`",
					d.what, age.Round(time.Second), d.a.doc.Seq, d.a.signer, stamp(d.a.doc.Issued), strings.Join(call.Principal.Roles, " "), h.ctl.maxAge))
			}
		}
	}
	if a := h.ctl.locks.Load(); a != nil {
		if ls := a.doc.Matching(call.Request.Agent, h.Node().Facts); len(ls) > 0 {
			l := ls[0]
			return refuse(control.CodeLocked, fmt.Sprintf("locked: %s locked by admin %s at %s (lock %s): %s; an admin lifts it with `signet unlock %s`",
				l.Scope, l.By, stamp(l.At), l.ID, l.Reason, l.ID))
		}
	}
	return nil
}

// authorizeControlRead authorizes an admin's control_state read, which
// returns the signed documents this host applied so that an admin can
// build the next one when the bucket holds none (a broker user flooded
// it). Keys with an admin role may read it whatever the rules say, and
// while a lock covers everything or the host's documents are stale (the
// unlock or the refresh needs it); a revoked key may not. done is false
// for every other call, which Authorize checks as usual.
func (h *Host) authorizeControlRead(call *bus.Call) (rep *bus.Reply, done bool) {
	req := call.Request
	if req.Agent != control.StateAgent || req.Action != control.StateAction || !h.policy.Load().IsAdmin(call.Principal.Roles) {
		return nil, false
	}
	if why := h.revocation(subjectOf(call.Principal)); why != "" {
		return &bus.Reply{Status: bus.StatusRefused, Code: control.CodeRevoked, Error: why}, true
	}
	p := h.plugins[req.Agent]
	action, _ := h.ddls[req.Agent].Action(req.Action)
	params, err := plugins.PrepareAction(p, action, req.Params)
	if err != nil {
		return &bus.Reply{Status: bus.StatusRefused, Code: bus.CodeInvalidParams, Error: err.Error()}, true
	}
	call.Authorized = &authorized{plugin: p, action: action, params: params}
	return nil, true
}

// controlState is the control_state reply: the frames this host applied.
func (h *Host) controlState() *plugins.Result {
	frames := map[string][]byte{}
	var seqs []string
	for kind, a := range map[string]*acceptedDoc{control.KindRevocations: h.ctl.revoked.Load(), control.KindLocks: h.ctl.locks.Load()} {
		if a != nil {
			frames[kind] = a.frame
			seqs = append(seqs, fmt.Sprintf("%s seq %d", kind, a.doc.Seq))
		}
	}
	slices.Sort(seqs)
	sum := "no control documents"
	if len(seqs) > 0 {
		sum = strings.Join(seqs, ", ")
	}
	return &plugins.Result{Summary: sum, Data: control.StateData(frames)}
}

// ApplyControl checks a control document stored under key (its kind) and,
// when this host accepts it, makes it the current one and audits what
// changed. It returns why it refused the document (also audited), or nil;
// a copy of the current document is accepted silently.
func (h *Host) ApplyControl(key string, frame []byte, aud bus.Auditor) error {
	now := h.ctl.now()
	rec := &bus.AuditRecord{Time: now, Identity: h.identity, Subject: "control." + key, Bytes: len(frame)}
	err := h.applyControl(key, frame, now, rec, aud)
	if err != nil {
		rec.Decision, rec.Status, rec.Code, rec.Reason = bus.DecisionRefused, bus.StatusRefused, CodeControlRefused, err.Error()
		if h.noteRefusal(now, aud) {
			h.audit(aud, rec)
			h.log.Warn("control document refused", "key", key, "err", err)
		}
	}
	return err
}

// controlRefusalRecords is how many refused control documents a minute are
// audited one by one; the rest are counted in one record per minute.
const controlRefusalRecords = 20

// noteRefusal counts a refused document and reports whether it gets its
// own audit record; when a minute ends with some left out, their count is
// audited.
func (h *Host) noteRefusal(now time.Time, aud bus.Auditor) bool {
	h.ctl.mu.Lock()
	defer h.ctl.mu.Unlock()
	if now.Sub(h.ctl.refusedWindow) >= time.Minute {
		if n := h.ctl.refusedCount - controlRefusalRecords; n > 0 {
			h.audit(aud, &bus.AuditRecord{Time: now, Identity: h.identity, Subject: "control", Decision: bus.DecisionSuppressed,
				Code: CodeControlRefused, Reason: fmt.Sprintf("%d more control documents refused without individual records", n),
				DurationMS: now.Sub(h.ctl.refusedWindow).Milliseconds(), Suppressed: map[string]int{CodeControlRefused: n}})
			h.log.Warn("control documents refused without individual records", "count", n)
		}
		h.ctl.refusedWindow, h.ctl.refusedCount = now, 0
	}
	h.ctl.refusedCount++
	return h.ctl.refusedCount <= controlRefusalRecords
}

func (h *Host) audit(aud bus.Auditor, rec *bus.AuditRecord) {
	if aud == nil {
		return
	}
	if err := aud.Audit(rec); err != nil {
		h.log.Error("audit record not written", "decision", rec.Decision, "err", err)
	}
}

func (h *Host) applyControl(key string, frame []byte, now time.Time, rec *bus.AuditRecord, aud bus.Auditor) error {
	var slot *atomic.Pointer[acceptedDoc]
	switch key {
	case control.KindRevocations:
		slot = &h.ctl.revoked
	case control.KindLocks:
		slot = &h.ctl.locks
	default:
		return fmt.Errorf("control: unknown key %q in the control bucket", key)
	}
	if prev := slot.Load(); prev != nil && bytes.Equal(prev.frame, frame) {
		return nil // the same document again (a watch restarted)
	}
	s, err := control.Open(frame)
	if err != nil {
		return err
	}
	d := s.Doc
	rec.Key = s.Fingerprint()
	if d.Kind != key {
		return fmt.Errorf("control: a %s document stored under %s", d.Kind, key)
	}
	if d.Collective != h.collective {
		return fmt.Errorf("control: document is for collective %q, this host is in %q", d.Collective, h.collective)
	}
	p, ok := h.LookupKey(s.KeyBlob)
	if !ok {
		return fmt.Errorf("control: signing key %s is not trusted on this host", s.Fingerprint())
	}
	rec.Principal, rec.Roles = p.Name, p.Roles
	if pol := h.policy.Load(); !pol.IsAdmin(p.Roles) {
		return fmt.Errorf("control: key %s (%s) has roles [%s], none of the policy's admin_roles [%s]", p.Fingerprint, p.Name, strings.Join(p.Roles, " "), strings.Join(pol.AdminRoles(), " "))
	}
	if why := h.revocation(subjectOf(p)); why != "" {
		return fmt.Errorf("control: signer %s: %s", p.Name, why)
	}
	if ahead := d.IssuedTime().Sub(now); ahead > h.ctl.skew {
		return fmt.Errorf("control: document is dated %s in the future (allowed clock skew %s)", ahead.Round(time.Second), h.ctl.skew)
	}
	h.ctl.mu.Lock()
	defer h.ctl.mu.Unlock()
	prev := slot.Load()
	var prevDoc *control.Document
	if prev != nil {
		prevDoc = prev.doc
	}
	if err := control.Newer(prevDoc, d); err != nil {
		return err
	}
	slot.Store(&acceptedDoc{doc: d, frame: append([]byte(nil), frame...), signer: p.Name})
	h.requestSave()
	h.log.Info("control document applied", "kind", d.Kind, "seq", d.Seq, "signer", p.Name, "revoked", len(d.Revoked), "locks", len(d.Locks))
	for _, c := range diff(prevDoc, d) {
		r := *rec
		r.Decision, r.Reason = c.decision, c.reason
		h.audit(aud, &r)
	}
	return nil
}

type change struct{ decision, reason string }

// diff lists the locks and revocations added and removed from prev to next.
func diff(prev, next *control.Document) []change {
	var out []change
	if next.Kind == control.KindLocks {
		old := map[string]control.Lock{}
		if prev != nil {
			for _, l := range prev.Locks {
				old[l.ID] = l
			}
		}
		for _, l := range next.Locks {
			if _, ok := old[l.ID]; !ok {
				out = append(out, change{DecisionLock, fmt.Sprintf("lock %s on %s by %s (seq %d): %s", l.ID, l.Scope, l.By, next.Seq, l.Reason)})
			}
			delete(old, l.ID)
		}
		for _, l := range old {
			out = append(out, change{DecisionUnlock, fmt.Sprintf("lock %s on %s lifted by %s (seq %d)", l.ID, l.Scope, next.By, next.Seq)})
		}
		return out
	}
	old := map[string]control.Revocation{}
	if prev != nil {
		for _, r := range prev.Revoked {
			old[r.What()] = r
		}
	}
	for _, r := range next.Revoked {
		if _, ok := old[r.What()]; !ok {
			out = append(out, change{DecisionRevoke, fmt.Sprintf("%s revoked by %s (seq %d): %s", r.What(), r.By, next.Seq, r.Reason)})
		}
		delete(old, r.What())
	}
	for _, r := range old {
		out = append(out, change{DecisionUnrevoke, fmt.Sprintf("%s no longer revoked (seq %d, by %s)", r.What(), next.Seq, next.By)})
	}
	if len(out) == 0 {
		out = append(out, change{DecisionRevoke, fmt.Sprintf("revocation list re-signed by %s (seq %d, %d entries)", next.By, next.Seq, len(next.Revoked))})
	}
	return out
}

// watchControl follows the collective's control bucket until ctx ends:
// every document put there is applied at once (a JetStream watch, not a
// poll). A missing bucket is created; when that fails (a broker where
// only admins may), it is looked for again every second.
func (h *Host) watchControl(ctx context.Context, nc *nats.Conn, n int, aud bus.Auditor, log *slog.Logger) {
	js, err := jetstream.New(nc)
	if err != nil {
		log.Error("control: no JetStream; revocations and locks from the broker are not applied", "err", err)
		return
	}
	if h.ctl.statePath != "" && h.ctl.saving.CompareAndSwap(false, true) {
		go h.saver(ctx)
	}
	bucket := control.Bucket(h.collective)
	for ctx.Err() == nil {
		if err := h.watchOnce(ctx, js, bucket, n, aud); err != nil && ctx.Err() == nil {
			log.Debug("control bucket not watched yet; retrying", "bucket", bucket, "err", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

func (h *Host) watchOnce(ctx context.Context, js jetstream.JetStream, bucket string, n int, aud bus.Auditor) error {
	kv, err := js.KeyValue(ctx, bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		// Create it, so the watch is in place before the first document;
		// where only admins may create it, wait for them.
		kv, err = replicas.KeyValue(ctx, js, control.BucketConfig(h.collective), n)
	}
	if err != nil {
		return err
	}
	// The whole kept history, not only the current values: a broker user
	// who wrote junk over the admin's newest document must not keep it
	// from a host that (re)connects now. Replayed documents apply in order;
	// what the host already has or refuses there is not audited again.
	w, err := kv.WatchAll(ctx, jetstream.IgnoreDeletes(), jetstream.IncludeHistory())
	if err != nil {
		return err
	}
	defer w.Stop()
	replaying := true
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-w.Updates():
			switch {
			case !ok:
				return errors.New("control: watch ended")
			case e == nil: // the history is in
				replaying = false
			case replaying:
				h.replayControl(e.Key(), e.Value(), aud)
			default:
				_ = h.ApplyControl(e.Key(), e.Value(), aud)
			}
		}
	}
}

// replayControl applies a document from the bucket's kept history, as
// the watch replays it on every (re)start: an older document, the current
// one again or junk is dropped without an audit record (the host saw it
// before, or it was written while the host was away and is no newer than
// what follows); a newer one is applied and audited as from ApplyControl.
func (h *Host) replayControl(key string, frame []byte, aud bus.Auditor) {
	now := h.ctl.now()
	rec := &bus.AuditRecord{Time: now, Identity: h.identity, Subject: "control." + key, Bytes: len(frame)}
	if err := h.applyControl(key, frame, now, rec, aud); err != nil {
		h.log.Debug("replayed control document not applied", "key", key, "err", err)
	}
}

// controlStatePath maps the config's "none" to no file.
func controlStatePath(p string) string {
	if p == "none" {
		return ""
	}
	return p
}

// savedControl is the control state file: the accepted frames.
type savedControl struct {
	Revocations []byte `json:"revocations,omitempty"`
	Locks       []byte `json:"locks,omitempty"`
}

// requestSave saves the state file: through the saver goroutine while a
// watch runs, at once otherwise.
func (h *Host) requestSave() {
	if h.ctl.statePath == "" || h.ctl.loading {
		return
	}
	if h.ctl.saving.Load() {
		select {
		case h.ctl.saveCh <- struct{}{}:
		default: // a save is already due; it will write the newest state
		}
		return
	}
	h.save()
}

func (h *Host) save() {
	if err := h.saveControlState(); err != nil {
		h.log.Error("control state not saved: after a restart this host could accept an older document", "path", h.ctl.statePath, "err", err)
	}
}

// saver writes the state file whenever asked, until ctx ends; then it
// writes once more if a save was due.
func (h *Host) saver(ctx context.Context) {
	for {
		select {
		case <-h.ctl.saveCh:
			h.save()
		case <-ctx.Done():
			h.ctl.saving.Store(false)
			select {
			case <-h.ctl.saveCh:
				h.save()
			default:
			}
			return
		}
	}
}

// saveControlState writes the newest accepted documents to a new file
// renamed into place.
func (h *Host) saveControlState() error {
	h.ctl.saveMu.Lock()
	defer h.ctl.saveMu.Unlock()
	var s savedControl
	if a := h.ctl.revoked.Load(); a != nil {
		s.Revocations = a.frame
	}
	if a := h.ctl.locks.Load(); a != nil {
		s.Locks = a.frame
	}
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(h.ctl.statePath), 0o750); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(h.ctl.statePath), ".control-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), h.ctl.statePath)
}

// loadControlState applies the documents saved before a restart, with
// the same checks as from the broker (a document whose signer is no longer
// an admin is dropped and logged). A missing file is a first start.
func (h *Host) loadControlState() error {
	if h.ctl.statePath == "" {
		return nil
	}
	b, err := os.ReadFile(h.ctl.statePath)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("control state: %w", err)
	}
	h.ctl.loading = true
	defer func() { h.ctl.loading = false }()
	var s savedControl
	if err := json.Unmarshal(b, &s); err != nil {
		h.log.Error("control state unreadable; starting without it", "path", h.ctl.statePath, "err", err)
		return nil
	}
	for kind, frame := range map[string][]byte{control.KindRevocations: s.Revocations, control.KindLocks: s.Locks} {
		if len(frame) == 0 {
			continue
		}
		now := h.ctl.now()
		rec := &bus.AuditRecord{}
		if err := h.applyControl(kind, frame, now, rec, nil); err != nil {
			h.log.Error("saved control document dropped", "kind", kind, "path", h.ctl.statePath, "err", err)
		}
	}
	return nil
}
