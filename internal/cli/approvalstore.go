package cli

import (
	"context"

	"github.com/signetbus/signet/bus"
)

// approvalStore opens the session's approvals bucket in the configured
// JetStream domain (nats.jetstream_domain), like the registry, the
// control bucket and the run state: a DR site's pending requests and
// approvals live in its own domain, reached through the leafnode.
func (s *session) approvalStore(ctx context.Context) (*bus.ApprovalStore, error) {
	js, err := s.cfg.NATS.JetStream(s.nc)
	if err != nil {
		return nil, err
	}
	store, err := bus.OpenApprovalStoreIn(ctx, js, s.cfg.Collective)
	if err != nil {
		return nil, withHint(err, "approvals need a broker with JetStream (signet broker has it)")
	}
	return store, nil
}

// approvalSession connects and opens the approvals bucket: what `signet
// approvals` and `signet approve` start with. The caller closes the
// session.
func (g *globalOptions) approvalSession(ctx context.Context) (*session, *bus.ApprovalStore, error) {
	s, err := g.connect(ctx)
	if err != nil {
		return nil, nil, err
	}
	store, err := s.approvalStore(ctx)
	if err != nil {
		s.Close()
		return nil, nil, err
	}
	return s, store, nil
}
