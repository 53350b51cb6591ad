package agents

import (
	"fmt"
	"slices"
	"strings"

	"github.com/signetbus/signet/bus"
)

// checkApprovals enforces the two-person rule on this host: when the
// policy's approvals list applies to the call, the request must carry a
// subject that covers it (bus.ApprovalSubject.Covers) and, for every
// applying entry, approvals from enough distinct keys holding the entry's
// role. The requester's own key never counts; a key counts once however
// many approvals it signed (a certificate's key is that key); an approval
// that does not verify, is outside its validity window, is for another
// digest, or comes from a key this host does not trust or has revoked,
// does not count. It returns the refusal, or nil; on success it leaves the
// approvers' names in call.Approvers for the audit record.
func (h *Host) checkApprovals(call *bus.Call) *bus.Reply {
	req := call.Request
	needs := h.policy.Load().Approvals(req.Agent, req.Action, h.Node().Facts)
	if len(needs) == 0 {
		return nil
	}
	approvers, notes := h.countApprovals(call)
	for _, n := range needs {
		got := 0
		for _, p := range approvers {
			if slices.Contains(p.Roles, n.Role) {
				got++
			}
		}
		if got >= n.Count {
			continue
		}
		msg := fmt.Sprintf("%s, has %d", n, got)
		for _, p := range approvers {
			if !slices.Contains(p.Roles, n.Role) {
				notes = append(notes, fmt.Sprintf("%s (%s) has roles [%s], not %s", p.Name, p.Fingerprint, strings.Join(p.Roles, " "), n.Role))
			}
		}
		notes = append(notes, fmt.Sprintf("policy approvals entry %q applies to %s.%s here", n.Rule, req.Agent, req.Action))
		msg += "; " + strings.Join(notes, "; ")
		msg += "; hint: the requester asks with `signet rpc --wait-approval --reason ...` and another operator runs `signet approve ID`"
		return &bus.Reply{Status: bus.StatusRefused, Code: bus.CodeNeedsApproval, Error: msg}
	}
	for _, p := range approvers {
		call.Approvers = append(call.Approvers, p.Name+" "+p.Fingerprint)
	}
	return nil
}

// maxApprovals is how many approvals of one request a host verifies; a
// trusted requester cannot make it verify more.
const maxApprovals = 16

// countApprovals returns the distinct approvers of the call's request,
// requester excluded, and why the other approvals do not count. Approvers
// are distinct by key and by name (the trust file's name= or the
// certificate's key ID): one person with two keys, or a requester with a
// second key, counts once, or not at all.
func (h *Host) countApprovals(call *bus.Call) ([]*bus.Principal, []string) {
	req := call.Request
	proof := req.Approval
	if proof == nil {
		return nil, []string{"the request carries no approval"}
	}
	if err := proof.Subject.Covers(req, h.Node(), call.Principal.Fingerprint, h.ctl.skew); err != nil {
		return nil, []string{"the approval does not cover this request: " + strings.TrimPrefix(err.Error(), bus.ErrApproval.Error()+": ")}
	}
	digest, err := bus.SubjectDigest(&proof.Subject)
	if err != nil {
		return nil, []string{err.Error()}
	}
	var notes []string
	var out []*bus.Principal
	seen, names := map[string]bool{}, map[string]bool{}
	now := h.ctl.now()
	for i := range proof.Approvals {
		if i == maxApprovals {
			notes = append(notes, fmt.Sprintf("only the first %d of %d approvals are checked", maxApprovals, len(proof.Approvals)))
			break
		}
		p, a, err := bus.VerifyApproval(h, &proof.Approvals[i], digest, now, h.ctl.skew)
		switch {
		case err != nil:
			notes = append(notes, fmt.Sprintf("approval %d not counted: %s", i+1, strings.TrimPrefix(err.Error(), bus.ErrApproval.Error()+": ")))
			continue
		case p.Fingerprint == call.Principal.Fingerprint:
			notes = append(notes, fmt.Sprintf("approval %d not counted: %s is the requester's own key", i+1, p.Fingerprint))
			continue
		case p.Name == call.Principal.Name:
			notes = append(notes, fmt.Sprintf("approval %d not counted: key %s is the requester %s's own", i+1, p.Fingerprint, p.Name))
			continue
		case seen[p.Fingerprint]:
			notes = append(notes, fmt.Sprintf("approval %d not counted: key %s (%s) already approved", i+1, p.Fingerprint, a.Approver))
			continue
		case names[p.Name]:
			notes = append(notes, fmt.Sprintf("approval %d not counted: %s already approved with another key", i+1, p.Name))
			continue
		}
		if why := h.revocation(subjectOf(p)); why != "" {
			notes = append(notes, fmt.Sprintf("approval %d not counted: approver %s: %s", i+1, p.Name, why))
			continue
		}
		seen[p.Fingerprint], names[p.Name] = true, true
		out = append(out, p)
	}
	return out, notes
}
