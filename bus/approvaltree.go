package bus

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/bits"
	"slices"
	"sync"
)

// A plan approved as a Merkle tree (docs/security.md, "How a step carries
// the approved plan").
//
// A plan subject of kind SubjectPlanTree is approved by the digest of its
// header: the subject without the plan, holding the plan's root (PlanRoot:
// what the plan deploys, the number of leaves and the root hash). Every
// call the plan allows on one host, or broadcast to one filter, is a leaf
// (PlanLeaf): agent, action, exact parameters, and the host or the
// filter. The leaves are the canonical JSON of each, deduplicated and
// sorted bytewise, hashed as RFC 6962 does (a leaf is SHA-256(0x00 ||
// leaf), a node SHA-256(0x01 || left || right), the tree split at the
// largest power of two), so leaf and node hashes cannot be confused and
// the root is a function of the set of calls.
//
// A step request carries the header, the approvals, and its own leaf with
// an inclusion proof (LeafProof): a few hundred bytes whatever the size of
// the plan. The host recomputes the root from the leaf and the proof,
// compares it with the approved header's, and checks the leaf against the
// request as it checks a plan step. The approver's `signet approve` sees
// the whole plan and recomputes the root from it before signing
// (ApprovalSubject.Check), so the root approved is the plan shown.

// SubjectPlanTree is the kind of a plan approved by its Merkle root.
const SubjectPlanTree = "plan_tree"

// Bounds of a plan tree: leaves (a 1,000-host deploy has about 10,000)
// and the length of an inclusion proof.
const (
	maxPlanLeaves = 1 << 24
	maxProofPath  = 64
)

// PlanRoot is what an approver of a plan tree signs about the plan: what
// it deploys, and its Merkle root over Leaves leaves.
type PlanRoot struct {
	Workflow string `json:"workflow"`
	App      string `json:"app"`
	Version  string `json:"version"`
	Env      string `json:"env,omitempty"`
	Leaves   int    `json:"leaves"`
	// Hash is the root, lowercase hex SHA-256.
	Hash string `json:"hash"`
	// Batches is the SHA-256 of the canonical JSON of the plan's batches
	// (a release's: each deploy's), so the order the approver was shown is
	// approved too; hosts check calls, not order.
	Batches string `json:"batches_sha256"`
}

// PlanLeaf is one call a plan allows: Agent.Action with exactly Params on
// Host, or (no Host) broadcast to the hosts Filter matches.
type PlanLeaf struct {
	Agent  string         `json:"agent"`
	Action string         `json:"action"`
	Params map[string]any `json:"params,omitempty"`
	Host   string         `json:"host,omitempty"`
	Filter Filter         `json:"filter,omitzero"`
}

// LeafProof is what a step request carries of a plan tree: its leaf, the
// leaf's index in the sorted leaves, and the audit path (RFC 6962 2.1.1:
// the sibling hashes from the leaf up).
type LeafProof struct {
	Leaf  PlanLeaf `json:"leaf"`
	Index int      `json:"index"`
	Path  [][]byte `json:"path"`
}

// SetPlan makes s a plan-tree subject of p: it computes p's root.
func (s *ApprovalSubject) SetPlan(p *ApprovalPlan) error {
	if err := p.check(); err != nil {
		return err
	}
	t, err := NewPlanTree(p)
	if err != nil {
		return err
	}
	s.Kind, s.Plan, s.Root = SubjectPlanTree, p, t.Root()
	return nil
}

// Header returns the subject as step requests carry it: without the plan,
// which its root stands for.
func (s *ApprovalSubject) Header() ApprovalSubject {
	h := *s
	h.Plan = nil
	return h
}

// checkTree checks a plan-tree subject: a root of the right form and,
// when the plan is there (the approver's copy), that it has that root.
func (s *ApprovalSubject) checkTree() error {
	r := s.Root
	if r == nil {
		return fmt.Errorf("%w: a plan tree subject needs its root", ErrApproval)
	}
	if s.Agent != "" || s.Action != "" || s.Params != nil || len(s.Targets) > 0 || !s.Filter.IsZero() {
		return fmt.Errorf("%w: a plan subject names its calls in its steps only", ErrApproval)
	}
	if r.Leaves < 1 || r.Leaves > maxPlanLeaves {
		return fmt.Errorf("%w: a plan tree has 1 to %d leaves, this one %d", ErrApproval, maxPlanLeaves, r.Leaves)
	}
	if b, err := hex.DecodeString(r.Hash); err != nil || len(b) != sha256.Size || hex.EncodeToString(b) != r.Hash {
		return fmt.Errorf("%w: the plan's root is not a lowercase hex SHA-256", ErrApproval)
	}
	if s.Plan == nil {
		return nil
	}
	t, err := NewPlanTree(s.Plan)
	if err != nil {
		return err
	}
	if got := t.Root(); *got != *r {
		if got.Hash == r.Hash && got.Leaves == r.Leaves {
			return fmt.Errorf("%w: the plan shown does not have the approved root: its batches or what it deploys differ", ErrApproval)
		}
		return fmt.Errorf("%w: the plan shown does not have the approved root (%.12s over %d leaves, the plan gives %.12s over %d)",
			ErrApproval, r.Hash, r.Leaves, got.Hash, got.Leaves)
	}
	return nil
}

// coversTree is Covers for a plan tree: the request's own leaf, proven to
// be under the approved root, is its call, on this host.
func (s *ApprovalSubject) coversTree(req *Request, node *Node) error {
	var step *LeafProof
	if req.Approval != nil {
		step = req.Approval.Step
	}
	r := s.Root
	if step == nil {
		return fmt.Errorf("%w: %s.%s carries no step of the approved %s of %s %s", ErrApproval, req.Agent, req.Action, r.Workflow, r.App, r.Version)
	}
	if err := step.Verify(r); err != nil {
		return err
	}
	l := &step.Leaf
	switch {
	case l.Agent != req.Agent || l.Action != req.Action:
		return fmt.Errorf("%w: the approved step carried is %s.%s, the request is %s.%s", ErrApproval, l.Agent, l.Action, req.Agent, req.Action)
	case !sameParams(l.Params, req.Params):
		return fmt.Errorf("%w: %s.%s with these parameters is not a step of the approved %s of %s %s", ErrApproval, req.Agent, req.Action, r.Workflow, r.App, r.Version)
	}
	if l.Host != "" {
		return coversAddress([]string{l.Host}, Filter{}, req, node)
	}
	return coversAddress(nil, l.Filter, req, node)
}

func leafHash(leaf []byte) [sha256.Size]byte {
	return sha256.Sum256(append([]byte{0}, leaf...))
}

func nodeHash(l, r [sha256.Size]byte) [sha256.Size]byte {
	var b [1 + 2*sha256.Size]byte
	b[0] = 1
	copy(b[1:], l[:])
	copy(b[1+sha256.Size:], r[:])
	return sha256.Sum256(b[:])
}

// decodeLeaf decodes a leaf as a request's JSON is decoded (numbers kept
// as written).
func decodeLeaf(b []byte, l *PlanLeaf) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	return dec.Decode(l)
}

// encodeLeaf is a leaf's canonical JSON, the bytes it is hashed as.
func encodeLeaf(l *PlanLeaf) ([]byte, error) {
	b, err := canonical(l)
	if err != nil {
		return nil, fmt.Errorf("%w: encode plan leaf: %v", ErrApproval, err)
	}
	return b, nil
}

// Verify checks that the proof's leaf is under root: the audit path from
// the leaf's hash at Index, in a tree of root.Leaves leaves, gives
// root.Hash (RFC 9162 2.1.3.2).
func (p *LeafProof) Verify(root *PlanRoot) error {
	size := uint64(root.Leaves)
	if p.Index < 0 || uint64(p.Index) >= size {
		return fmt.Errorf("%w: step proof index %d outside the plan's %d leaves", ErrApproval, p.Index, size)
	}
	if len(p.Path) > maxProofPath {
		return fmt.Errorf("%w: step proof of %d hashes, at most %d", ErrApproval, len(p.Path), maxProofPath)
	}
	b, err := encodeLeaf(&p.Leaf)
	if err != nil {
		return err
	}
	r := leafHash(b)
	fn, sn := uint64(p.Index), size-1
	for _, h := range p.Path {
		if len(h) != sha256.Size {
			return fmt.Errorf("%w: step proof hash of %d bytes, want %d", ErrApproval, len(h), sha256.Size)
		}
		if sn == 0 {
			return fmt.Errorf("%w: step proof longer than the plan's tree", ErrApproval)
		}
		sib := [sha256.Size]byte(h)
		if fn&1 == 1 || fn == sn {
			r = nodeHash(sib, r)
			for fn&1 == 0 && fn != 0 {
				fn >>= 1
				sn >>= 1
			}
		} else {
			r = nodeHash(r, sib)
		}
		fn >>= 1
		sn >>= 1
	}
	if sn != 0 || hex.EncodeToString(r[:]) != root.Hash {
		return fmt.Errorf("%w: the step carried is not in the approved plan (its proof does not lead to the approved root %.12s)", ErrApproval, root.Hash)
	}
	return nil
}

// PlanTree is a plan's Merkle tree, for the requester: its root, and the
// proof of each call.
type PlanTree struct {
	root   PlanRoot
	leaves [][]byte
	hashes [][sha256.Size]byte
	index  map[string]int
	// filters indexes the broadcast leaves by call (agent, action,
	// params), for a broadcast sent to named hosts.
	filters map[string]int

	mu   sync.Mutex
	memo map[[2]int][sha256.Size]byte
}

// NewPlanTree builds the tree of plan p: one leaf per call and host (or
// filter) of every step, its deploys' included.
func NewPlanTree(p *ApprovalPlan) (*PlanTree, error) {
	seen := map[string]bool{}
	var leaves [][]byte
	add := func(l PlanLeaf) error {
		b, err := encodeLeaf(&l)
		if err != nil {
			return err
		}
		if !seen[string(b)] {
			seen[string(b)] = true
			leaves = append(leaves, b)
		}
		return nil
	}
	for _, st := range p.AllSteps() {
		if len(st.Hosts) == 0 {
			if err := add(PlanLeaf{Agent: st.Agent, Action: st.Action, Params: st.Params, Filter: st.Filter}); err != nil {
				return nil, err
			}
			continue
		}
		for _, h := range st.Hosts {
			if err := add(PlanLeaf{Agent: st.Agent, Action: st.Action, Params: st.Params, Host: h}); err != nil {
				return nil, err
			}
		}
	}
	if len(leaves) == 0 {
		return nil, fmt.Errorf("%w: a plan subject needs a plan with steps", ErrApproval)
	}
	if len(leaves) > maxPlanLeaves {
		return nil, fmt.Errorf("%w: the plan has %d calls, at most %d", ErrApproval, len(leaves), maxPlanLeaves)
	}
	slices.SortFunc(leaves, bytes.Compare)
	t := &PlanTree{leaves: leaves, index: map[string]int{}, filters: map[string]int{}, memo: map[[2]int][sha256.Size]byte{}}
	for i, b := range leaves {
		t.index[string(b)] = i
		t.hashes = append(t.hashes, leafHash(b))
	}
	for _, st := range p.AllSteps() {
		if len(st.Hosts) == 0 {
			key, _ := encodeLeaf(&PlanLeaf{Agent: st.Agent, Action: st.Action, Params: st.Params})
			if _, dup := t.filters[string(key)]; !dup {
				b, _ := encodeLeaf(&PlanLeaf{Agent: st.Agent, Action: st.Action, Params: st.Params, Filter: st.Filter})
				t.filters[string(key)] = t.index[string(b)]
			}
		}
	}
	batches := [][][]string{p.Batches}
	for i := range p.Deploys {
		batches = append(batches, p.Deploys[i].Batches)
	}
	bb, err := canonical(batches)
	if err != nil {
		return nil, fmt.Errorf("%w: encode plan batches: %v", ErrApproval, err)
	}
	bsum := sha256.Sum256(bb)
	root := t.subtree(0, len(leaves))
	t.root = PlanRoot{Workflow: p.Workflow, App: p.App, Version: p.Version, Env: p.Env, Leaves: len(leaves), Hash: hex.EncodeToString(root[:]),
		Batches: hex.EncodeToString(bsum[:])}
	return t, nil
}

// Root returns the tree's root.
func (t *PlanTree) Root() *PlanRoot {
	r := t.root
	return &r
}

// subtree is the hash of leaves [lo, hi) (RFC 6962 MTH), memoized.
func (t *PlanTree) subtree(lo, hi int) [sha256.Size]byte {
	if hi-lo == 1 {
		return t.hashes[lo]
	}
	t.mu.Lock()
	h, ok := t.memo[[2]int{lo, hi}]
	t.mu.Unlock()
	if ok {
		return h
	}
	k := splitPoint(hi - lo)
	h = nodeHash(t.subtree(lo, lo+k), t.subtree(lo+k, hi))
	t.mu.Lock()
	t.memo[[2]int{lo, hi}] = h
	t.mu.Unlock()
	return h
}

// splitPoint is the largest power of two smaller than n (n > 1).
func splitPoint(n int) int {
	return 1 << (bits.Len(uint(n-1)) - 1)
}

// path is the audit path of leaf m in leaves [lo, hi).
func (t *PlanTree) path(m, lo, hi int) [][]byte {
	if hi-lo == 1 {
		return nil
	}
	k := splitPoint(hi - lo)
	if m < lo+k {
		s := t.subtree(lo+k, hi)
		return append(t.path(m, lo, lo+k), s[:])
	}
	s := t.subtree(lo, lo+k)
	return append(t.path(m, lo+k, hi), s[:])
}

// Prove returns the proof of leaf l, or nil when l is not a call of the
// plan.
func (t *PlanTree) Prove(l PlanLeaf) *LeafProof {
	b, err := encodeLeaf(&l)
	if err != nil {
		return nil
	}
	i, ok := t.index[string(b)]
	if !ok {
		return nil
	}
	return &LeafProof{Leaf: l, Index: i, Path: t.path(i, 0, len(t.leaves))}
}

// ProveCall returns the proof a request for agent.action with params,
// addressed to targets or broadcast to f, carries: the leaf of its one
// target, or of its filter, or (a broadcast sent to the hosts of its
// filter by name) the broadcast leaf of the same call. Nil when the plan
// has no such call.
func (t *PlanTree) ProveCall(agent, action string, params map[string]any, targets []string, f Filter) *LeafProof {
	if len(targets) == 0 {
		return t.Prove(PlanLeaf{Agent: agent, Action: action, Params: params, Filter: f})
	}
	if len(targets) == 1 {
		if p := t.Prove(PlanLeaf{Agent: agent, Action: action, Params: params, Host: targets[0]}); p != nil {
			return p
		}
	}
	key, err := encodeLeaf(&PlanLeaf{Agent: agent, Action: action, Params: params})
	if err != nil {
		return nil
	}
	i, ok := t.filters[string(key)]
	if !ok {
		return nil
	}
	var l PlanLeaf
	if err := decodeLeaf(t.leaves[i], &l); err != nil {
		return nil
	}
	return &LeafProof{Leaf: l, Index: i, Path: t.path(i, 0, len(t.leaves))}
}
