package control

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/crypto/ssh"
)

// UpdateOptions say how Update builds the next document.
type UpdateOptions struct {
	Kind   string
	Signer ssh.Signer
	// By is the admin's name, shown in refusals and audit records.
	By string
	// TrustBase decides whether the current document, which the next one
	// copies, was signed by an admin the caller trusts. A broker user can
	// put a document signed by their own key (hosts refuse it); copying
	// its entries would drop revocations or locks. Required.
	TrustBase func(*Signed) error
	// Edit changes the copy; it must not change Kind, Seq or Issued.
	Edit func(d *Document) error
	// Hosts, when set, asks the hosts for the documents they applied.
	// Update builds on the newest of them when the key's history holds no
	// document to build on (a broker user buried the admins' documents
	// under junk, or purged or deleted the key; not when the key was never
	// written, or the whole bucket was deleted), and it lets Update publish without
	// a compare-and-set while junk keeps arriving: it then asks the hosts
	// which document they applied, so an admin who lost a race with
	// another admin finds out and builds again on the winner's document.
	// Without it such a bucket is an error, as before.
	Hosts HostsFunc
	// Notice, when set, receives what the admin should know about how
	// the document was built and published (a flooded bucket, a base
	// recovered from hosts, a plain put): one line each.
	Notice func(string)
	// ConfirmWait bounds how long Update waits for the hosts to apply a
	// document it published without a compare-and-set; default 5s.
	ConfirmWait time.Duration
}

// Junk writes the compare-and-set loses to before Update publishes with a
// plain put, and how many times Update builds a document at most.
const (
	junkConflictsBeforePut = 2
	maxUpdateAttempts      = 8
)

// errNoBase is a bucket whose history holds entries of kind but none
// that verifies and that the caller trusts.
type errNoBase struct {
	kind    string
	entries int
	skipped []string
}

func (e *errNoBase) Error() string {
	return fmt.Sprintf("control: no %s document in the bucket's history is one you can build on (%s); someone without an admin key wrote the bucket: lock the broker down so only admins write it, then publish again",
		e.kind, strings.Join(e.skipped, "; "))
}

// Update reads the current document, copies it with the next sequence
// number and the current time, applies Edit, signs it and stores it with
// a compare-and-set on the bucket revision, retrying when another admin
// wrote in between. It returns the stored document.
//
// A broker user who can write the bucket cannot stop it (see Hosts): with
// no document to build on in the bucket, Update builds on the hosts'
// newest; when the compare-and-set keeps losing to junk, it puts the
// document plainly and confirms with the hosts, whose sequence check
// serializes admins (of two documents with the same Seq they apply the
// first the broker delivers and refuse the other).
func (s *Store) Update(ctx context.Context, o UpdateOptions) (*Document, error) {
	if o.TrustBase == nil || o.Signer == nil {
		return nil, errors.New("control: Update needs a Signer and TrustBase")
	}
	say := o.Notice
	seen := map[string]bool{}
	o.Notice = func(s string) { // once each: attempts repeat themselves
		if say != nil && !seen[s] {
			seen[s] = true
			say(s)
		}
	}
	notice := o.Notice
	var (
		junk        int
		prevSeq     uint64 // the base of the last attempt, 0 for none
		conflicted  bool
		preferHosts bool // after a lost race: the hosts know the winner
	)
	for attempt := 0; ; attempt++ {
		if attempt >= maxUpdateAttempts {
			return nil, fmt.Errorf("control: store %s: gave up after %d attempts", o.Kind, attempt)
		}
		cur, rev, err := s.base(ctx, o.Kind, o.TrustBase)
		var noBase *errNoBase
		if err != nil && !errors.As(err, &noBase) {
			return nil, err
		}
		fromHosts := false
		// A key never written (rev 0) needs no host: the first lock of a
		// collective works before any host answers (or in a domain whose
		// registry the client cannot read).
		if o.Hosts != nil && (noBase != nil || preferHosts) {
			rc, herr := s.recoverFromHosts(ctx, o, noBase, preferHosts)
			if herr != nil {
				return nil, herr
			}
			cur, err, fromHosts = rc.Base, nil, true
		}
		if err != nil {
			return nil, err
		}
		var seq uint64
		if cur != nil {
			seq = cur.Doc.Seq
		}
		if conflicted && seq == prevSeq {
			junk++ // what beat the compare-and-set was no newer document
		}
		prevSeq, conflicted = seq, false
		next := &Document{Kind: o.Kind, Collective: s.collective, Seq: 1}
		if cur != nil {
			next.Revoked = append(next.Revoked, cur.Doc.Revoked...)
			next.Locks = append(next.Locks, cur.Doc.Locks...)
			next.Seq = cur.Doc.Seq + 1
		}
		next.Issued, next.By = s.Now().UnixMilli(), o.By
		if cur != nil && next.Issued <= cur.Doc.Issued {
			next.Issued = cur.Doc.Issued + 1
		}
		if o.Edit != nil {
			if err := o.Edit(next); err != nil {
				return nil, err
			}
		}
		frame, err := Sign(rand.Reader, o.Signer, next)
		if err != nil {
			return nil, err
		}
		// Asking a large fleet takes long enough that junk arriving every
		// few milliseconds always beats the compare-and-set: one loss is
		// enough then.
		plain := o.Hosts != nil && (junk >= junkConflictsBeforePut || fromHosts && junk >= 1)
		switch {
		case plain:
			_, err = s.kv.Put(ctx, o.Kind, frame)
		case rev == 0:
			_, err = s.kv.Create(ctx, o.Kind, frame)
		default:
			_, err = s.kv.Update(ctx, o.Kind, frame, rev)
		}
		if err != nil {
			if plain || !(errors.Is(err, jetstream.ErrKeyExists) || isWrongSequence(err)) {
				return nil, fmt.Errorf("control: store %s: %w", o.Kind, err)
			}
			if o.Hosts == nil && attempt >= 4 {
				return nil, fmt.Errorf("control: store %s: %w", o.Kind, err)
			}
			conflicted = true
			continue
		}
		if !plain {
			return next, nil
		}
		notice(fmt.Sprintf("the compare-and-set on the %s key lost to writes that are no admin's document (%d times): published seq %d with a plain put; the hosts' sequence check decides between admins", o.Kind, junk, next.Seq))
		lost, err := s.confirm(ctx, o, next, frame, notice)
		if err != nil {
			return nil, err
		}
		if !lost {
			return next, nil
		}
		preferHosts = true
	}
}

// recoverFromHosts asks the hosts for the newest document of o.Kind.
// noBase is the bucket's state when it has entries but none to build on
// (nil when the hosts are asked after a lost race).
func (s *Store) recoverFromHosts(ctx context.Context, o UpdateOptions, noBase *errNoBase, lostRace bool) (*Recovered, error) {
	states, asked, err := o.Hosts(ctx)
	if err != nil {
		if noBase != nil {
			return nil, fmt.Errorf("%w; and the hosts could not be asked: %w", noBase, err)
		}
		return nil, err
	}
	rc := pick(states, asked, o.Kind, s.collective, o.TrustBase)
	switch {
	case rc.Base == nil && len(rc.Skipped) > 0:
		return nil, fmt.Errorf("control: no host holds a %s document you can build on%s", o.Kind, rc.skipped())
	case noBase != nil && rc.Answered == 0:
		return nil, fmt.Errorf("%w; and no host answered (%d asked), so there is no document to build on: start the hosts or wait for them, then publish again", noBase, asked)
	case noBase != nil && !lostRace:
		o.Notice(fmt.Sprintf("the %s key of bucket %s is flooded: none of its %d kept revisions is a document signed by an admin you trust; built on the hosts' %s",
			o.Kind, Bucket(s.collective), noBase.entries, rc))
	case rc.Base != nil && lostRace:
		o.Notice(fmt.Sprintf("built again on the hosts' %s", rc))
	}
	return rc, nil
}

// confirm asks the hosts until each that answers holds next (or a newer
// document), at most ConfirmWait. It reports lost when a host applied
// another document with next's Seq: another admin's, delivered first.
func (s *Store) confirm(ctx context.Context, o UpdateOptions, next *Document, frame []byte, notice func(string)) (lost bool, err error) {
	wait := o.ConfirmWait
	if wait <= 0 {
		wait = 5 * time.Second
	}
	deadline := time.Now().Add(wait)
	for {
		states, asked, err := o.Hosts(ctx)
		if err != nil {
			return false, fmt.Errorf("control: %s seq %d is published, but the hosts could not be asked whether they applied it: %w", o.Kind, next.Seq, err)
		}
		var have, behind int
		var newer []string
		for _, hs := range states {
			f := hs.Frames[o.Kind]
			if bytes.Equal(f, frame) {
				have++
				continue
			}
			sd, err := Open(f)
			if err == nil && (sd.Doc.Kind != o.Kind || sd.Doc.Collective != s.collective) {
				err = fmt.Errorf("a %s document of collective %q", sd.Doc.Kind, sd.Doc.Collective)
			}
			if err == nil && sd.Doc.Seq >= next.Seq {
				err = o.TrustBase(sd)
			}
			if err != nil {
				// Not an admin's document you trust: a host that answers
				// with it cannot make you give up or drop entries.
				notice(fmt.Sprintf("host %s answered with a %s document you do not build on: %v", hs.Identity, o.Kind, err))
				behind++
				continue
			}
			if sd.Doc.Seq < next.Seq {
				behind++
				continue
			}
			if sd.Doc.Seq == next.Seq {
				notice(fmt.Sprintf("host %s applied another %s document with seq %d (signed by %s, %s): another admin published first and the hosts refused yours; building again on theirs",
					hs.Identity, o.Kind, next.Seq, sd.Doc.By, sd.Fingerprint()))
				return true, nil
			}
			newer = append(newer, fmt.Sprintf("%s has seq %d", hs.Identity, sd.Doc.Seq))
		}
		if len(newer) > 0 {
			notice(fmt.Sprintf("hosts already hold a newer %s document than your seq %d (%s): check it with --list", o.Kind, next.Seq, strings.Join(newer, ", ")))
			return false, nil
		}
		if behind == 0 || time.Now().After(deadline) || ctx.Err() != nil {
			msg := fmt.Sprintf("%d of %d answering hosts (%d asked) applied %s seq %d", have, len(states), asked, o.Kind, next.Seq)
			if behind > 0 {
				msg += fmt.Sprintf("; %d had not after %s (they apply it when the broker delivers it)", behind, wait)
			}
			notice(msg)
			return false, nil
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// base finds the newest document of kind in the bucket's history that
// verifies and that trust accepts, skipping any a broker user wrote since,
// and the bucket's latest revision for the compare-and-set. A key with
// entries but none to build on is an *errNoBase, with the revision.
func (s *Store) base(ctx context.Context, kind string, trust func(*Signed) error) (*Signed, uint64, error) {
	entries, err := s.kv.History(ctx, kind)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("control: read %s: %w", kind, err)
	}
	rev := entries[len(entries)-1].Revision()
	var skipped []string
	for i := len(entries) - 1; i >= 0; i-- {
		e := entries[i]
		if e.Operation() != jetstream.KeyValuePut {
			continue
		}
		sd, err := Open(e.Value())
		if err == nil && (sd.Doc.Kind != kind || sd.Doc.Collective != s.collective) {
			err = fmt.Errorf("a %s document of collective %q", sd.Doc.Kind, sd.Doc.Collective)
		}
		if err == nil {
			err = trust(sd)
		}
		if err == nil {
			return sd, rev, nil
		}
		skipped = append(skipped, fmt.Sprintf("revision %d: %v", e.Revision(), err))
	}
	if len(skipped) > 3 {
		skipped = append(skipped[:3], fmt.Sprintf("and %d more", len(skipped)-3))
	}
	return nil, rev, &errNoBase{kind: kind, entries: len(entries), skipped: skipped}
}
