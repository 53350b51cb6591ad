package bus

import (
	"errors"
	"fmt"
	"net/url"
	"unicode"
	"unicode/utf8"
)

// Provenance says why a request was sent: the run it belongs to, the
// ticket or CI build that asked for the change, and, for a request that
// undoes one (a rollback), the reason. It travels inside the signed
// request, so a host can trust it as far as it trusts the signer, and the
// host copies it into every audit record of the request.
type Provenance struct {
	// Run is the workflow run id ("7f3a09c1").
	Run string `json:"run,omitempty"`
	// Ticket is the change ticket ("CHG-1234", "OPS-42").
	Ticket string `json:"ticket,omitempty"`
	// BuildURL is the CI build that started the run (Jenkins' BUILD_URL).
	BuildURL string `json:"build_url,omitempty"`
	// Reason says why this request was sent, such as "rollback: web3:
	// health: ...".
	Reason string `json:"reason,omitempty"`
}

// Provenance field limits.
const (
	maxProvenanceField  = 128
	maxProvenanceURL    = 1024
	maxProvenanceReason = 1024
)

// ErrProvenance is wrapped by Provenance.Check.
var ErrProvenance = errors.New("bus: invalid provenance")

// Check validates a provenance: bounded lengths, printable UTF-8 without
// control characters (it lands in audit logs and terminals), a run id of
// lowercase letters, digits, '_' and '-', and an http or https build URL.
// A nil provenance is valid.
func (p *Provenance) Check() error {
	if p == nil {
		return nil
	}
	for _, f := range []struct {
		name, v string
		max     int
	}{{"run", p.Run, maxProvenanceField}, {"ticket", p.Ticket, maxProvenanceField}, {"build_url", p.BuildURL, maxProvenanceURL}, {"reason", p.Reason, maxProvenanceReason}} {
		if len(f.v) > f.max {
			return fmt.Errorf("%w: %s is %d bytes, at most %d allowed", ErrProvenance, f.name, len(f.v), f.max)
		}
		if !utf8.ValidString(f.v) {
			return fmt.Errorf("%w: %s is not valid UTF-8", ErrProvenance, f.name)
		}
		for _, r := range f.v {
			if unicode.IsControl(r) || r == utf8.RuneError {
				return fmt.Errorf("%w: %s holds a control character", ErrProvenance, f.name)
			}
		}
	}
	for _, r := range p.Run {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return fmt.Errorf("%w: run %q: want lowercase letters, digits, '_' or '-'", ErrProvenance, p.Run)
		}
	}
	if p.BuildURL != "" {
		u, err := url.Parse(p.BuildURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("%w: build_url %q: want an http or https URL", ErrProvenance, p.BuildURL)
		}
	}
	return nil
}

// RunID is the run's id, "" without a provenance.
func (p *Provenance) RunID() string {
	if p == nil {
		return ""
	}
	return p.Run
}

// Empty reports whether p carries nothing.
func (p *Provenance) Empty() bool { return p == nil || *p == Provenance{} }
