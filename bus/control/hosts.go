package control

import (
	"context"
	"fmt"
	"strings"

	"github.com/signetbus/signet/bus"
)

// The hosts hold the truth: each applies only admin-signed documents
// with a newer Seq and keeps the frames it applied. Anyone who can write
// the bucket can bury the admins' documents under junk revisions (more
// than the bucket keeps), so an admin whose bucket holds no document to
// build on asks the hosts for theirs with this read-only action. Hosts
// answer it to keys with an admin role whatever the policy's rules, even
// while a lock covers everything (the unlock needs it), and audit it as
// any request.
const (
	StateAgent  = "rpcutil"
	StateAction = "control_state"
)

// StateData is the reply data of the control_state action: the frames a
// host applied by kind (absent when it has none).
func StateData(frames map[string][]byte) map[string]any {
	out := map[string]any{}
	for _, kind := range []string{KindRevocations, KindLocks} {
		if f := frames[kind]; len(f) > 0 {
			out[kind] = string(f)
		}
	}
	return out
}

// HostState is one host's answer to control_state.
type HostState struct {
	Identity string
	// Frames are the host's applied frames by kind, unverified.
	Frames map[string][]byte
}

// ParseState reads the reply data of control_state.
func ParseState(identity string, data map[string]any) (HostState, error) {
	hs := HostState{Identity: identity, Frames: map[string][]byte{}}
	for k, v := range data {
		if k != KindRevocations && k != KindLocks {
			continue
		}
		s, ok := v.(string)
		if !ok {
			return hs, fmt.Errorf("%w: host %s: control_state %s is a %T, not a frame", ErrMalformed, identity, k, v)
		}
		hs.Frames[k] = []byte(s)
	}
	return hs, nil
}

// HostsFunc asks the hosts for the frames they applied. Asked is how many
// hosts the question went to; states are the answers.
type HostsFunc func(ctx context.Context) (states []HostState, asked int, err error)

// AskHosts is a HostsFunc over c: it sends q as the control_state action
// (its Agent and Action are set), to every host with the rpcutil agent
// when q names no targets (through the registry, or a broadcast discovery
// without one, which finds no host while a lock covers rpcutil: its ping
// is refused), and reads the signed replies.
func AskHosts(c *bus.Client, q bus.Query) HostsFunc {
	q.Agent, q.Action = StateAgent, StateAction
	return func(ctx context.Context) ([]HostState, int, error) {
		out, err := c.Do(ctx, q)
		if err != nil {
			return nil, 0, fmt.Errorf("control: ask the hosts for their control state: %w", err)
		}
		var states []HostState
		for _, r := range out.Results {
			if r.Status != bus.ResultOK || r.Reply == nil {
				continue
			}
			hs, err := ParseState(r.Identity, r.Reply.Data)
			if err != nil {
				continue // one host's bad answer must not hide the others'
			}
			states = append(states, hs)
		}
		return states, len(out.Results), nil
	}
}

// Recovered is a base document recovered from the hosts.
type Recovered struct {
	Base *Signed // nil when no host has a document of the kind
	// Holding is how many hosts hold Base (the same frame); Answered how
	// many answered, Asked how many were asked.
	Holding, Answered, Asked int
	// Skipped lists frames that did not verify or that TrustBase refused,
	// by host.
	Skipped []string
}

func (r *Recovered) String() string {
	if r.Base == nil {
		return fmt.Sprintf("no %d answering hosts of %d asked hold a document", r.Answered, r.Asked)
	}
	return fmt.Sprintf("seq %d signed by %s, held by %d of %d answering hosts (%d asked)", r.Base.Doc.Seq, r.Base.Fingerprint(), r.Holding, r.Answered, r.Asked)
}

// Newest asks the hosts and returns the newest document of kind that
// verifies, belongs to collective and that trust accepts (Base is nil
// when no host has one).
func Newest(ctx context.Context, hosts HostsFunc, kind, collective string, trust func(*Signed) error) (*Recovered, error) {
	states, asked, err := hosts(ctx)
	if err != nil {
		return nil, err
	}
	return pick(states, asked, kind, collective, trust), nil
}

// pick chooses the newest document of kind among the hosts' frames that
// verifies, belongs to collective and that trust accepts. Of two frames
// with that seq (an admin who lost a race signed the other, and a host
// answers with it), the one more hosts hold wins.
func pick(states []HostState, asked int, kind, collective string, trust func(*Signed) error) *Recovered {
	r := &Recovered{Answered: len(states), Asked: asked}
	held := map[string]int{}
	docs := map[string]*Signed{}
	for _, hs := range states {
		f := hs.Frames[kind]
		if len(f) == 0 {
			continue
		}
		sd, err := Open(f)
		if err == nil && (sd.Doc.Kind != kind || sd.Doc.Collective != collective) {
			err = fmt.Errorf("a %s document of collective %q", sd.Doc.Kind, sd.Doc.Collective)
		}
		if err == nil {
			err = trust(sd)
		}
		if err != nil {
			r.Skipped = append(r.Skipped, fmt.Sprintf("host %s: %v", hs.Identity, err))
			continue
		}
		held[string(f)]++
		docs[string(f)] = sd
	}
	var base string
	for f, sd := range docs {
		switch {
		case r.Base == nil, sd.Doc.Seq > r.Base.Doc.Seq,
			sd.Doc.Seq == r.Base.Doc.Seq && held[f] > r.Holding,
			sd.Doc.Seq == r.Base.Doc.Seq && held[f] == r.Holding && f < base: // the same answer every time
			r.Base, r.Holding, base = sd, held[f], f
		}
	}
	return r
}

func (r *Recovered) skipped() string {
	if len(r.Skipped) == 0 {
		return ""
	}
	return " (skipped: " + strings.Join(r.Skipped, "; ") + ")"
}
