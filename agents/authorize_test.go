package agents

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/signetbus/signet/bus"
	"github.com/signetbus/signet/plugins"
)

// validating counts its Validate calls.
type validating struct {
	marker
	validated *atomic.Int64
}

func (v validating) Validate(string, plugins.Params) error { v.validated.Add(1); return nil }

// TestAuthorizeThenHandleValidatesOnce: the responder asks Authorize
// (policy and validation) before the replay cache; Handle then runs what
// Authorize allowed without checking it all again. Policy denials come
// from Authorize, before anything is admitted.
func TestAuthorizeThenHandleValidatesOnce(t *testing.T) {
	f := newFixture(t, "ops", "rules:\n  - roles: [ops]\n    allow: [\"marker.mark\"]\n")
	var runs, validated atomic.Int64
	h, err := NewHost(HostOptions{Identity: "web1", Collective: "t", Plugins: map[string]plugins.Plugin{"marker": validating{marker{&runs}, &validated}},
		AuthorizedKeys: f.cfg.AuthorizedKeys, Policy: f.cfg.Policy})
	if err != nil {
		t.Fatal(err)
	}
	p, _ := h.LookupKey(f.op.PublicKey().Marshal())
	call := &bus.Call{Principal: p, Request: &bus.Request{ID: "r", Agent: "marker", Action: "mark"}}
	if rep := h.Authorize(context.Background(), call); rep != nil {
		t.Fatalf("authorize: %+v", rep)
	}
	if rep := h.Handle(context.Background(), call); rep.Status != bus.StatusOK || runs.Load() != 1 {
		t.Fatalf("handle: %+v", rep)
	}
	if got := validated.Load(); got != 1 {
		t.Fatalf("parameters validated %d times, want once", got)
	}
	denied := &bus.Call{Principal: p, Request: &bus.Request{ID: "r2", Agent: "rpcutil", Action: "ping"}}
	if rep := h.Authorize(context.Background(), denied); rep == nil || rep.Code != bus.CodeDenied {
		t.Fatalf("a denied call authorized: %+v", rep)
	}
}
