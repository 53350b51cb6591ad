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
	return bus.OpenApprovalStoreIn(ctx, js, s.cfg.Collective)
}
