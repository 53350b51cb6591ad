package workflows

import (
	"context"
	"fmt"
	"sort"

	"github.com/signetbus/signet/bus"
	"github.com/signetbus/signet/internal/lazyre"
)

type provenanceKey struct{}

// WithProvenance returns ctx carrying p: every call a Caller makes with
// it sends p inside the signed request (buscaller does), so the hosts
// audit the run, ticket and build behind it.
func WithProvenance(ctx context.Context, p *bus.Provenance) context.Context {
	return context.WithValue(ctx, provenanceKey{}, p)
}

// ProvenanceFrom returns the provenance ctx carries, nil when none.
func ProvenanceFrom(ctx context.Context) *bus.Provenance {
	p, _ := ctx.Value(provenanceKey{}).(*bus.Provenance)
	return p
}

// provenance is what every request of the run carries: its id, ticket
// and build URL, and reason (for a rollback) when set.
func (st *RunState) provenance(reason string) *bus.Provenance {
	return &bus.Provenance{Run: st.ID, Ticket: st.Ticket, BuildURL: st.BuildURL, Reason: reason}
}

var sha256RE = lazyre.New(`^[0-9a-f]{64}$`)

// ValidSHA256 reports whether s is a SHA-256 digest as signet writes it:
// 64 lowercase hex digits.
func ValidSHA256(s string) bool { return sha256RE.MatchString(s) }

// validateProvenance checks the run's ticket, build URL and digests as
// strictly as a request's provenance.
func (st *RunState) validateProvenance() error {
	if err := (&bus.Provenance{Ticket: st.Ticket, BuildURL: st.BuildURL}).Check(); err != nil {
		return fmt.Errorf("%w: %v", ErrStateInvalid, err)
	}
	versions := make([]string, 0, len(st.Digests))
	for v := range st.Digests {
		versions = append(versions, v)
	}
	sort.Strings(versions)
	for _, v := range versions {
		if !ValidVersion(v) || !ValidSHA256(st.Digests[v]) {
			return fmt.Errorf("%w: digests: want a version and 64 lowercase hex digits, found %q: %q", ErrStateInvalid, v, st.Digests[v])
		}
	}
	return nil
}
