package bus

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/signetbus/signet/internal/grammar"
	"github.com/signetbus/signet/internal/sshsig"
)

// The two-person rule (see docs/security.md, "Two-person rule").
//
// An approver signs the digest of an ApprovalSubject: either one request's
// content (SubjectRequest) or a whole deploy or release plan
// (SubjectPlan). The requester then signs requests that carry the subject
// and the approvals (Request.Approval). The host that runs a request
// checks, for itself, that the subject covers the request and counts the
// approvals; neither the bastion nor the broker is trusted with it.

// ApprovalNamespace is the SSHSIG namespace of approvals, and
// PendingNamespace that of a pending request a requester publishes for
// approvers to see. Neither can pass as a request, a reply or a control.
const (
	ApprovalNamespace = "signet-approval@v1"
	PendingNamespace  = "signet-approval-request@v1"
)

// Subject kinds.
const (
	SubjectRequest = "request"
	SubjectPlan    = "plan"
)

// CodeNeedsApproval refuses a request the policy requires approvals for
// and that does not carry enough valid ones.
const CodeNeedsApproval = "needs_approval"

// ErrApproval is wrapped by every approval check's error.
var ErrApproval = errors.New("bus: approval not acceptable")

// ApprovalSubject is what an approver approves, and what every request
// that relies on the approval carries.
type ApprovalSubject struct {
	// Kind is SubjectRequest or SubjectPlan.
	Kind       string `json:"kind"`
	Collective string `json:"collective"`
	// Requester is the fingerprint of the key that will sign the requests
	// (a certificate's key for a certificate); RequesterName the name the
	// requester gives, shown to the approver.
	Requester     string `json:"requester"`
	RequesterName string `json:"requester_name"`
	// Reason is why, in the requester's words; required.
	Reason string `json:"reason"`
	// Expires, Unix milliseconds, is the last moment a request may be
	// signed under this subject.
	Expires int64 `json:"expires"`

	// For SubjectRequest: the request's agent, action, parameters and
	// addressing. Targets, when set, are all the hosts the request may go
	// to; with none, Filter selects them.
	Agent   string         `json:"agent,omitempty"`
	Action  string         `json:"action,omitempty"`
	Params  map[string]any `json:"params,omitempty"`
	Filter  Filter         `json:"filter,omitzero"`
	Targets []string       `json:"targets,omitempty"`

	// For SubjectPlan: the plan. For SubjectPlanTree: the plan as the
	// approver sees it, left out of step requests (Header), and its root
	// (approvaltree.go), which the approval's digest covers.
	Plan *ApprovalPlan `json:"plan,omitempty"`
	Root *PlanRoot     `json:"root,omitempty"`
}

// ApprovalPlan is a deploy or release as approved: every call it will
// make, with the hosts it may make it on.
type ApprovalPlan struct {
	// Workflow is "deploy", "workflow" or "release"; App, Version and Env
	// say what (for a release: the ticket's title and the manifest's
	// SHA-256).
	Workflow string `json:"workflow"`
	App      string `json:"app"`
	Version  string `json:"version"`
	Env      string `json:"env,omitempty"`
	// Batches are the hosts deployed, batch by batch.
	Batches [][]string `json:"batches"`
	// Steps are the distinct calls of the plan (for a release: its own,
	// such as the repository refresh).
	Steps []PlanStep `json:"steps"`
	// Deploys are a release's deploys, each a plan of its own, in the
	// manifest's order. One approval of the release covers all of them.
	Deploys []ApprovalPlan `json:"deploys,omitempty"`
}

// maxPlanDeploys bounds a release's deploys.
const maxPlanDeploys = 256

// AllSteps returns the plan's steps and those of its deploys.
func (p *ApprovalPlan) AllSteps() []PlanStep {
	out := append([]PlanStep(nil), p.Steps...)
	for i := range p.Deploys {
		out = append(out, p.Deploys[i].Steps...)
	}
	return out
}

// check checks a plan's form: it has steps, and only a release has
// deploys, which have no deploys of their own.
func (p *ApprovalPlan) check() error {
	if len(p.Deploys) > 0 {
		if p.Workflow != "release" {
			return fmt.Errorf("%w: only a release plan has deploys, this is a %q plan", ErrApproval, p.Workflow)
		}
		if len(p.Deploys) > maxPlanDeploys {
			return fmt.Errorf("%w: a release plan has at most %d deploys, this one %d", ErrApproval, maxPlanDeploys, len(p.Deploys))
		}
		for i := range p.Deploys {
			if len(p.Deploys[i].Deploys) > 0 {
				return fmt.Errorf("%w: deploy %d of the release has deploys of its own", ErrApproval, i+1)
			}
		}
	}
	if len(p.AllSteps()) == 0 {
		return fmt.Errorf("%w: a plan subject needs a plan with steps", ErrApproval)
	}
	return nil
}

// PlanStep is one call of a plan: Agent.Action with exactly Params, on
// any of Hosts (direct) or, with no Hosts, broadcast to Filter.
type PlanStep struct {
	Name   string         `json:"name,omitempty"`
	Agent  string         `json:"agent"`
	Action string         `json:"action"`
	Params map[string]any `json:"params,omitempty"`
	Hosts  []string       `json:"hosts,omitempty"`
	Filter Filter         `json:"filter,omitzero"`
}

// ApprovalProof is what a request carries under the two-person rule: the
// approved subject and the approvals of it.
type ApprovalProof struct {
	Subject   ApprovalSubject  `json:"subject"`
	Approvals []SignedApproval `json:"approvals,omitempty"`
	// Step is, for a plan tree, the request's own call with the proof
	// that it is under the approved root.
	Step *LeafProof `json:"step,omitempty"`
}

// Approval is what an approver signs.
type Approval struct {
	// Digest is SubjectDigest of the approved subject.
	Digest string `json:"digest"`
	// Approver is the name the approver gives; Key the fingerprint of the
	// signing key; Cert their user certificate (EncodeCert), if any.
	Approver string `json:"approver"`
	Key      string `json:"key"`
	Cert     string `json:"cert,omitempty"`
	// Created and Expires, Unix milliseconds, bound when hosts accept it.
	Created int64 `json:"created"`
	Expires int64 `json:"expires"`
}

// SignedApproval is an approval with its SSHSIG signature.
type SignedApproval struct {
	Payload []byte `json:"payload"`
	Sig     []byte `json:"sig"`
}

// canonical is the JSON of v with its numbers kept as written and map
// keys sorted: the same bytes whether v was built in memory or decoded
// from a request (which keeps numbers as json.Number).
func canonical(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var x any
	if err := dec.Decode(&x); err != nil {
		return nil, err
	}
	return json.Marshal(x)
}

// SubjectDigest is the lowercase hex SHA-256 of the subject's canonical
// JSON: what an approver signs.
//
// For a plan tree the digest is that of the header (the subject without
// the plan, holding its root): the same whether the plan is there or not.
func SubjectDigest(s *ApprovalSubject) (string, error) {
	if s.Kind == SubjectPlanTree {
		h := s.Header()
		s = &h
	}
	b, err := canonical(s)
	if err != nil {
		return "", fmt.Errorf("%w: encode subject: %v", ErrApproval, err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

// Check checks a subject's form: its kind and the fields that kind needs.
func (s *ApprovalSubject) Check() error {
	if strings.TrimSpace(s.Reason) == "" {
		return fmt.Errorf("%w: a reason is required", ErrApproval)
	}
	if s.Requester == "" || s.Expires <= 0 {
		return fmt.Errorf("%w: a requester key and an expiry are required", ErrApproval)
	}
	switch s.Kind {
	case SubjectRequest:
		if s.Plan != nil || s.Root != nil {
			return fmt.Errorf("%w: a request subject carries no plan", ErrApproval)
		}
		if err := CheckName("agent", s.Agent); err != nil {
			return fmt.Errorf("%w: %v", ErrApproval, err)
		}
		if err := CheckName("action", s.Action); err != nil {
			return fmt.Errorf("%w: %v", ErrApproval, err)
		}
	case SubjectPlanTree:
		return s.checkTree()
	case SubjectPlan:
		if s.Root != nil {
			return fmt.Errorf("%w: a plan subject without a tree carries no root", ErrApproval)
		}
		if s.Plan == nil {
			return fmt.Errorf("%w: a plan subject needs a plan with steps", ErrApproval)
		}
		if err := s.Plan.check(); err != nil {
			return err
		}
		if s.Agent != "" || s.Action != "" || s.Params != nil || len(s.Targets) > 0 || !s.Filter.IsZero() {
			return fmt.Errorf("%w: a plan subject names its calls in its steps only", ErrApproval)
		}
	default:
		return fmt.Errorf("%w: subject kind %q, want %q, %q or %q", ErrApproval, s.Kind, SubjectRequest, SubjectPlanTree, SubjectPlan)
	}
	return nil
}

// sameParams compares parameters as the canonical JSON sees them.
func sameParams(a, b map[string]any) bool {
	if len(a) == 0 && len(b) == 0 {
		return true
	}
	ca, err1 := canonical(a)
	cb, err2 := canonical(b)
	return err1 == nil && err2 == nil && bytes.Equal(ca, cb)
}

func subset(sub, of []string) string {
	for _, t := range sub {
		if !slices.Contains(of, t) {
			return t
		}
	}
	return ""
}

// Covers says why the subject does not cover req as this host (node)
// receives it from the key requester, or nil when it does: the same
// collective and requester key, signed before the subject expired, and
// the same call (for a plan: one of its steps) addressed within it.
func (s *ApprovalSubject) Covers(req *Request, node *Node, requester string, skew time.Duration) error {
	if err := s.Check(); err != nil {
		return err
	}
	if s.Collective != req.Collective {
		return fmt.Errorf("%w: approved for collective %q, the request is for %q", ErrApproval, s.Collective, req.Collective)
	}
	if s.Requester != requester {
		return fmt.Errorf("%w: approved for requests signed by %s, this one is signed by %s", ErrApproval, s.Requester, requester)
	}
	if req.Created > s.Expires+skew.Milliseconds() {
		return fmt.Errorf("%w: the approved subject expired at %s, the request was signed after", ErrApproval, time.UnixMilli(s.Expires).UTC().Format(time.RFC3339))
	}
	if s.Kind == SubjectRequest {
		switch {
		case s.Agent != req.Agent || s.Action != req.Action:
			return fmt.Errorf("%w: approved %s.%s, the request is %s.%s", ErrApproval, s.Agent, s.Action, req.Agent, req.Action)
		case !sameParams(s.Params, req.Params):
			return fmt.Errorf("%w: the request's parameters differ from the approved ones", ErrApproval)
		}
		return coversAddress(s.Targets, s.Filter, req, node)
	}
	if s.Kind == SubjectPlanTree {
		return s.coversTree(req, node)
	}
	var why error
	for _, st := range s.Plan.AllSteps() {
		if st.Agent != req.Agent || st.Action != req.Action || !sameParams(st.Params, req.Params) {
			continue
		}
		if why = coversAddress(st.Hosts, st.Filter, req, node); why == nil {
			return nil
		}
	}
	if why != nil {
		return why
	}
	return fmt.Errorf("%w: %s.%s with these parameters is not a step of the approved %s of %s %s", ErrApproval, req.Agent, req.Action, s.Plan.Workflow, s.Plan.App, s.Plan.Version)
}

// coversAddress checks that a request goes to approved hosts: with hosts,
// this host and every target are among them; without, this host matches
// the approved filter (a host judges only itself: a broadcast step whose
// silent hosts were left out reaches the others by name).
func coversAddress(hosts []string, f Filter, req *Request, node *Node) error {
	if len(hosts) > 0 {
		if !slices.Contains(hosts, node.Identity) {
			return fmt.Errorf("%w: this host (%s) is not among the approved targets", ErrApproval, node.Identity)
		}
		if t := subset(req.Targets, hosts); t != "" {
			return fmt.Errorf("%w: the request also targets %s, which is not approved", ErrApproval, t)
		}
		return nil
	}
	m, err := f.Compile()
	if err != nil {
		return fmt.Errorf("%w: approved filter: %v", ErrApproval, err)
	}
	if !m.Match(node) {
		return fmt.Errorf("%w: this host (%s) does not match the approved filter", ErrApproval, node.Identity)
	}
	return nil
}

// SignApproval signs an approval of subject by signer, valid from now
// until expires. A certificate signer adds its certificate, as for a
// request; an expired one is refused here, before anything is sent.
func SignApproval(signer ssh.Signer, approver string, s *ApprovalSubject, now, expires time.Time) (*SignedApproval, error) {
	if err := s.Check(); err != nil {
		return nil, err
	}
	digest, err := SubjectDigest(s)
	if err != nil {
		return nil, err
	}
	if !expires.After(now) {
		return nil, fmt.Errorf("%w: the approval would expire before it is made", ErrApproval)
	}
	a := &Approval{Digest: digest, Approver: approver, Created: now.UnixMilli(), Expires: expires.UnixMilli()}
	cert, s2 := certSigner(signer)
	if cert != nil {
		if cert.CertType != ssh.UserCert {
			return nil, fmt.Errorf("%w: certificate %s (serial %d) is a host certificate; approve with a user certificate", ErrCertificate, cert.KeyId, cert.Serial)
		}
		if err := CertValid(cert, now, 0); err != nil {
			return nil, err
		}
		a.Cert = EncodeCert(cert)
	}
	a.Key = ssh.FingerprintSHA256(s2.PublicKey())
	payload, err := json.Marshal(a)
	if err != nil {
		return nil, err
	}
	sig, err := sshsig.Sign(rand.Reader, s2, ApprovalNamespace, payload)
	if err != nil {
		return nil, err
	}
	return &SignedApproval{Payload: payload, Sig: sig.Marshal()}, nil
}

// OpenApproval parses a signed approval and checks its signature against
// the key it carries; whether that key is trusted is VerifyApproval's.
func OpenApproval(sa *SignedApproval) (*Approval, *sshsig.Signature, error) {
	sig, err := sshsig.Parse(sa.Sig)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrApproval, err)
	}
	if sig.Namespace != ApprovalNamespace {
		return nil, nil, fmt.Errorf("%w: signature namespace is %q, want %q", ErrApproval, sig.Namespace, ApprovalNamespace)
	}
	pub, err := sig.Verify(ApprovalNamespace, sa.Payload)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: signature does not verify: %v", ErrApproval, err)
	}
	var a Approval
	dec := json.NewDecoder(bytes.NewReader(sa.Payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&a); err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrApproval, err)
	}
	if a.Key != ssh.FingerprintSHA256(pub) {
		return nil, nil, fmt.Errorf("%w: approval claims key %s but is signed by %s", ErrApproval, a.Key, ssh.FingerprintSHA256(pub))
	}
	return &a, sig, nil
}

// VerifyApproval checks one approval for a subject digest at now: the
// signature, the digest, the validity window (with skew) and the signer,
// who must be a key trust lists or hold a user certificate from an
// authority trust knows (then the certificate's principals, as far as the
// authority may grant them, are the roles). It returns the approver.
func VerifyApproval(trust Trust, sa *SignedApproval, digest string, now time.Time, skew time.Duration) (*Principal, *Approval, error) {
	a, sig, err := OpenApproval(sa)
	if err != nil {
		return nil, nil, err
	}
	if a.Digest != digest {
		return nil, a, fmt.Errorf("%w: %s's approval is for another request or plan (digest %.12s, this one %.12s)", ErrApproval, a.Approver, a.Digest, digest)
	}
	if now.Add(skew).UnixMilli() < a.Created {
		return nil, a, fmt.Errorf("%w: %s's approval is dated in the future", ErrApproval, a.Approver)
	}
	if now.Add(-skew).UnixMilli() > a.Expires {
		return nil, a, fmt.Errorf("%w: %s's approval expired at %s", ErrApproval, a.Approver, time.UnixMilli(a.Expires).UTC().Format(time.RFC3339))
	}
	if a.Cert == "" {
		p, ok := trust.LookupKey(sig.PublicKey)
		if !ok {
			return nil, a, fmt.Errorf("%w: approver key %s (%s) is not trusted on this host", ErrApproval, a.Key, a.Approver)
		}
		return p, a, nil
	}
	p, err := certPrincipal(trust, a.Cert, sig.PublicKey, now, skew)
	if err != nil {
		return nil, a, fmt.Errorf("%w: approver %s: %v", ErrApproval, a.Approver, err)
	}
	return p, a, nil
}

// certPrincipal checks a user certificate for the key keyBlob, as
// authenticateCert does for a request, and returns its principal.
func certPrincipal(trust Trust, wire string, keyBlob []byte, now time.Time, skew time.Duration) (*Principal, error) {
	ct, ok := trust.(CertTrust)
	if !ok {
		return nil, errors.New("this host trusts no certificate authority")
	}
	c, err := DecodeCert(wire)
	if err != nil {
		return nil, err
	}
	ca, ok := ct.LookupCA(c.SignatureKey.Marshal())
	if !ok {
		return nil, fmt.Errorf("certificate %s (serial %d) is signed by %s, which is not a certificate authority this host trusts", c.KeyId, c.Serial, ssh.FingerprintSHA256(c.SignatureKey))
	}
	if !bytes.Equal(c.Key.Marshal(), keyBlob) {
		return nil, fmt.Errorf("certificate %s (serial %d) certifies another key than the one that signed", c.KeyId, c.Serial)
	}
	var roles []string
	for _, p := range c.ValidPrincipals {
		if slices.Contains(ca.Roles, p) && !slices.Contains(roles, p) {
			roles = append(roles, p)
		}
	}
	if len(roles) == 0 {
		return nil, fmt.Errorf("certificate %s (serial %d) names principals %s, none of them a role that authority %s may grant here (%s)",
			c.KeyId, c.Serial, strings.Join(c.ValidPrincipals, ","), ca.Name, strings.Join(ca.Roles, ","))
	}
	if err := checkCert(c, ssh.UserCert, roles[0], now, skew, false); err != nil {
		return nil, err
	}
	if err := grammar.CheckOperator(c.KeyId); err != nil {
		return nil, fmt.Errorf("certificate serial %d: key ID names the operator: %v", c.Serial, err)
	}
	return &Principal{Name: c.KeyId, Roles: roles, Fingerprint: ssh.FingerprintSHA256(c.Key), Key: c.Key, Cert: c}, nil
}
