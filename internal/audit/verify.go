package audit

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/signetbus/signet/bus"
	"github.com/signetbus/signet/internal/sshsig"
)

// Kinds of finding.
const (
	FindingEdited    = "edited"    // a line's bytes differ from what the chain or a checkpoint recorded
	FindingDeleted   = "deleted"   // seqs are missing
	FindingReordered = "reordered" // a line comes after a line with a higher seq
	FindingTruncated = "truncated" // the tail is cut: an incomplete last line, or no checkpoint for longer than allowed
	FindingForged    = "forged"    // a checkpoint signature does not verify against the host's key
	FindingUnknown   = "unknown"   // lines from a host not in known_hosts: they cannot be authenticated
	FindingSignature = "signature" // a record's stored request signature does not verify, is missing, or signs other fields
)

// Finding is one problem, by host and seq.
type Finding struct {
	Host   string `json:"host"`
	Seq    uint64 `json:"seq"`
	Kind   string `json:"kind"`
	Detail string `json:"detail"`
	// Where is the line's place in its source ("audit.jsonl:12", "stream
	// message 40").
	Where string `json:"where,omitempty"`
}

func (f Finding) String() string {
	s := fmt.Sprintf("%s seq %d: %s: %s", f.Host, f.Seq, f.Kind, f.Detail)
	if f.Where != "" {
		s += " (" + f.Where + ")"
	}
	return s
}

// Line is one raw line to verify, in the order it was stored.
type Line struct {
	Raw []byte // without the newline
	// Host, when known from elsewhere (the stream subject), must match the
	// record's identity.
	Host  string
	Where string
	// Partial marks a last line that had no newline.
	Partial bool
}

// HostSummary is what Verify saw of one host.
type HostSummary struct {
	Host        string `json:"host"`
	Records     int    `json:"records"`
	First       uint64 `json:"first_seq"`
	Last        uint64 `json:"last_seq"`
	Checkpoints int    `json:"checkpoints_verified"`
	// Requests counts the records whose stored request signature verified.
	Requests int `json:"requests_verified"`
	// Unsigned counts the lines after the last verified checkpoint: the
	// chain covers them, no host signature does yet.
	Unsigned int       `json:"unsigned"`
	LastTime time.Time `json:"last_time"`
}

// Report is the result of Verify.
type Report struct {
	Hosts    []HostSummary `json:"hosts"`
	Findings []Finding     `json:"findings"`
}

// VerifyOptions tune Verify.
type VerifyOptions struct {
	// HostKey returns a host's key (from known_hosts).
	HostKey func(identity string) (ssh.PublicKey, bool)
	// HostCA reports whether an @cert-authority line trusts ca to certify
	// identity: a checkpoint of a host with no pinned key verifies with the
	// key of the host certificate it carries.
	HostCA func(identity string, ca ssh.PublicKey) bool
	// FromStart requires each host's chain to start at seq 1 (a full copy
	// such as the stream; a rotated file starts later).
	FromStart bool
	// MaxAge, when set, reports a host whose newest line is older than Now
	// minus MaxAge: checkpoints are written at an interval, so a silent
	// copy has lost its tail (or the host stopped).
	MaxAge time.Duration
	Now    time.Time
	// Signers, when set, is the hosts' operator trust (their
	// authorized_keys): a request must be signed by a key it lists under
	// the record's operator name, or carry a certificate of an authority it
	// lists. Without it a verified signature proves only that the record's
	// key signed the request, whoever holds that key.
	Signers *Signers
}

// Signers is the operator trust a verifier checks signers against.
type Signers struct {
	// Keys maps a listed key's wire form to its operator name.
	Keys map[string]string
	// CAs holds the wire forms of the listed certificate authorities.
	CAs map[string]bool
}

type seen struct {
	e     *Entry
	hash  string
	where string
}

// Verify checks the chains and checkpoints of lines from any number of
// hosts, in stored order.
func Verify(lines []Line, o VerifyOptions) *Report {
	rep := &Report{}
	add := func(host string, seq uint64, kind, where, format string, a ...any) {
		rep.Findings = append(rep.Findings, Finding{Host: host, Seq: seq, Kind: kind, Detail: fmt.Sprintf(format, a...), Where: where})
	}
	byHost := map[string]map[uint64]seen{}
	maxSeq := map[string]uint64{}
	var order []string
	lastSeq := map[string]uint64{}
	lastHost := ""
	for _, ln := range lines {
		at := ln.Host
		if at == "" {
			at = lastHost
		}
		e, err := ParseLine(ln.Raw)
		if ln.Partial {
			add(at, lastSeq[at]+1, FindingTruncated, ln.Where, "the last line is incomplete (%d bytes, no newline)", len(ln.Raw))
			continue
		}
		if err != nil || e.Seq == 0 && e.Identity == "" {
			add(at, lastSeq[at]+1, FindingEdited, ln.Where, "the line is not an audit record")
			continue
		}
		if e.Seq == 0 {
			continue // written before the chain existed
		}
		host := e.Identity
		if ln.Host != "" && ln.Host != host {
			add(ln.Host, e.Seq, FindingEdited, ln.Where, "the record names host %q", host)
			host = ln.Host
		}
		lastSeq[host], lastHost = e.Seq, host
		m := byHost[host]
		if m == nil {
			m = map[uint64]seen{}
			byHost[host] = m
			order = append(order, host)
		}
		h := LineHash(ln.Raw)
		if old, ok := m[e.Seq]; ok {
			if old.hash != h {
				add(host, e.Seq, FindingEdited, ln.Where, "two different records carry this seq (the other at %s)", old.where)
			}
			continue // an identical copy (a re-shipped line) is harmless
		}
		if e.Seq < maxSeq[host] {
			add(host, e.Seq, FindingReordered, ln.Where, "stored after seq %d", maxSeq[host])
		}
		maxSeq[host] = max(maxSeq[host], e.Seq)
		m[e.Seq] = seen{e: e, hash: h, where: ln.Where}
	}
	slices.Sort(order)
	for _, host := range order {
		m := byHost[host]
		seqs := make([]uint64, 0, len(m))
		for s := range m {
			seqs = append(seqs, s)
		}
		slices.Sort(seqs)
		sum := HostSummary{Host: host, Records: len(seqs), First: seqs[0], Last: seqs[len(seqs)-1]}
		_, pinned := hostKey(o, host)
		byCA := false
		if first := m[seqs[0]]; first.e.Seq == 1 && first.e.Prev != "" {
			add(host, 1, FindingEdited, first.where, "seq 1 has a prev hash but starts the chain")
		} else if o.FromStart && first.e.Seq > 1 {
			add(host, 1, FindingDeleted, first.where, "seqs 1 to %d are missing (deleted, or expired by the stream's retention)", first.e.Seq-1)
		}
		for i, s := range seqs {
			cur := m[s]
			sum.Unsigned++
			sum.LastTime = cur.e.Time
			if i > 0 {
				p := seqs[i-1]
				if s != p+1 {
					add(host, p+1, FindingDeleted, cur.where, "seqs %d to %d are missing", p+1, s-1)
				} else if cur.e.Prev != m[p].hash {
					add(host, p, FindingEdited, m[p].where, "its bytes do not hash to the prev recorded by seq %d", s)
				}
			}
			if cp := cur.e.Checkpoint; cp != nil || cur.e.Decision == DecisionCheckpoint {
				if ok, ca := checkCheckpoint(host, cur, m, o, add); ok {
					sum.Checkpoints++
					sum.Unsigned = 0 // the checkpoint line itself is signed
					byCA = byCA || ca
				}
				continue
			}
			if cur.e.Signed == nil {
				if cur.e.Principal != "" && !controlRecord(cur.e) {
					add(host, s, FindingSignature, cur.where, "the record of an authenticated request (operator %s) keeps no signed request", cur.e.Principal)
				}
				continue
			}
			if d := checkSigned(cur.e, o.Signers); d != "" {
				add(host, s, FindingSignature, cur.where, "%s", d)
			} else {
				sum.Requests++
			}
		}
		if !pinned && !byCA {
			// Anyone on the broker can publish lines under a made-up host.
			add(host, seqs[0], FindingUnknown, m[seqs[0]].where, "host %s has no key pinned in known_hosts and no checkpoint carries a host certificate from an authority known_hosts trusts for it (a host certified by a trusted CA is known from its first checkpoint, written every audit.checkpoint_interval): its lines cannot be authenticated", host)
		}
		if o.MaxAge > 0 && o.Now.Sub(sum.LastTime) > o.MaxAge {
			add(host, sum.Last, FindingTruncated, m[sum.Last].where, "the newest line is from %s, older than %s: lines after it may have been cut", sum.LastTime.UTC().Format(time.RFC3339), o.MaxAge)
		}
		rep.Hosts = append(rep.Hosts, sum)
	}
	return rep
}

func hostKey(o VerifyOptions, host string) (ssh.PublicKey, bool) {
	if o.HostKey == nil {
		return nil, false
	}
	return o.HostKey(host)
}

// checkCheckpoint verifies one checkpoint line and reports what is wrong;
// byCA says the key came from a host certificate.
func checkCheckpoint(host string, cur seen, m map[uint64]seen, o VerifyOptions, add func(string, uint64, string, string, string, ...any)) (ok, byCA bool) {
	cp := cur.e.Checkpoint
	if cp == nil {
		add(host, cur.e.Seq, FindingEdited, cur.where, "a checkpoint line without a checkpoint")
		return false, false
	}
	if cp.Seq+1 != cur.e.Seq || cp.Hash != cur.e.Prev {
		add(host, cur.e.Seq, FindingEdited, cur.where, "the signed checkpoint (seq %d) does not match the line's own chain fields", cp.Seq)
		return false, false
	}
	blob, err := base64.StdEncoding.DecodeString(cp.Sig)
	var sig *sshsig.Signature
	if err == nil {
		sig, err = sshsig.Parse(blob)
	}
	if err == nil && sig.Namespace != CheckpointNamespace {
		err = fmt.Errorf("namespace %q", sig.Namespace)
	}
	var pub ssh.PublicKey
	if err == nil {
		pinned, ok := hostKey(o, host)
		switch {
		case ok && (cp.HostCert == "" || bytes.Equal(pinned.Marshal(), sig.PublicKey)):
			pub = pinned
		case cp.HostCert != "":
			pub, err = checkpointCertKey(host, cp.HostCert, sig.PublicKey, cur.e.Time, o)
			byCA = err == nil
		default:
			return false, false // an unknown host: reported once for the host
		}
	}
	if err == nil {
		err = sig.VerifyWith(pub, CheckpointMessage(host, cp.Seq, cp.Hash))
	}
	if err != nil {
		add(host, cur.e.Seq, FindingForged, cur.where, "the checkpoint signature does not verify with %s's host key: %v", host, err)
		return false, false
	}
	// The signature covers seq and hash; the chain must agree with them.
	if prev, ok := m[cp.Seq]; ok && cp.Seq > 0 && prev.hash != cp.Hash {
		add(host, cp.Seq, FindingEdited, prev.where, "the host signed a different hash for this seq in the checkpoint at seq %d: the chain up to here was rewritten", cur.e.Seq)
	}
	return true, byCA
}

// checkpointCertKey returns the key of the host certificate a checkpoint
// carries, when it is a host certificate naming host, valid at t, of the
// key that signed the checkpoint, from an authority known_hosts trusts
// for host.
func checkpointCertKey(host, wire string, sigKey []byte, t time.Time, o VerifyOptions) (ssh.PublicKey, error) {
	c, err := bus.DecodeCert(wire)
	if err != nil {
		return nil, err
	}
	if o.HostCA == nil || !o.HostCA(host, c.SignatureKey) {
		return nil, fmt.Errorf("its host certificate is signed by %s, which known_hosts does not trust for %s", ssh.FingerprintSHA256(c.SignatureKey), host)
	}
	if !slices.Contains(c.ValidPrincipals, host) {
		return nil, fmt.Errorf("its host certificate names %s, not %s", strings.Join(c.ValidPrincipals, ","), host)
	}
	if err := checkCertAt(c, ssh.HostCert, t); err != nil {
		return nil, err
	}
	if !bytes.Equal(c.Key.Marshal(), sigKey) {
		return nil, fmt.Errorf("its host certificate certifies %s, not the key that signed it", ssh.FingerprintSHA256(c.Key))
	}
	return c.Key, nil
}

// FileLines splits a log file's bytes into lines for Verify; name labels
// each line's place ("NAME:LINE"). A last line without a newline is marked
// Partial.
func FileLines(data []byte, name string) []Line {
	var out []Line
	for n := 1; len(data) > 0; n++ {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			out = append(out, Line{Raw: data, Where: fmt.Sprintf("%s:%d", name, n), Partial: true})
			break
		}
		out = append(out, Line{Raw: data[:i], Where: fmt.Sprintf("%s:%d", name, n)})
		data = data[i+1:]
	}
	return out
}

// controlRecord says whether e is a host's record of a control document
// it applied or refused (a lock, an unlock, a revocation: subject
// "control.KIND", no request id, agent or action). It names the admin who
// signed the document but is no request, so it keeps no signed request;
// the document itself stays in the control bucket's history and the
// host's control_state. Like every line, it is covered by the chain and
// the checkpoints.
func controlRecord(e *Entry) bool {
	return e.RequestID == "" && e.Agent == "" && e.Action == "" && strings.HasPrefix(e.Subject, "control.")
}
