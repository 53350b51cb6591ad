package cli

import (
	"strings"

	"github.com/spf13/cobra"

	"github.com/signetbus/signet/bus"
	"github.com/signetbus/signet/workflows"
	"github.com/signetbus/signet/workflows/deploy"
)

// provenanceFlags say who asked for a deploy and which artifact it may
// install (docs/workflows.md, "Provenance"). They travel inside every
// signed request of the run and land in every audit record.
type provenanceFlags struct {
	ticket, buildURL, sha256 string
}

func (p *provenanceFlags) register(c *cobra.Command) {
	f := c.Flags()
	f.StringVar(&p.ticket, "ticket", "", "change ticket id carried by every request of the run and audited on every host (e.g. CHG-1234)")
	f.StringVar(&p.buildURL, "build-url", "", "CI build URL carried and audited the same way (default: $BUILD_URL, as Jenkins sets it; credentials and query are dropped)")
	f.StringVar(&p.sha256, "sha256", "", "SHA-256 of VERSION's package file: each host refuses a file that does not match, before dpkg or rpm runs")
}

// provenance resolves the flags (and BUILD_URL) for a new run. A resumed
// run keeps the ones it recorded, so the flags are refused with --resume.
func (p *provenanceFlags) provenance(getenv func(string) string, resume bool) (deploy.Provenance, error) {
	if resume {
		if p.ticket != "" || p.buildURL != "" || p.sha256 != "" {
			return deploy.Provenance{}, usageErrorf("--ticket, --build-url and --sha256 are recorded when a run starts: a resumed run keeps its own")
		}
		return deploy.Provenance{}, nil
	}
	out := deploy.Provenance{Ticket: p.ticket, BuildURL: p.buildURL, SHA256: strings.ToLower(p.sha256)}
	if out.BuildURL == "" {
		out.BuildURL = getenv("BUILD_URL")
	}
	if out.BuildURL != "" {
		out.BuildURL = deploy.CleanBuildURL(out.BuildURL)
	}
	if err := (&bus.Provenance{Ticket: out.Ticket, BuildURL: out.BuildURL}).Check(); err != nil {
		return deploy.Provenance{}, usageErrorf("%v", err)
	}
	if out.SHA256 != "" && !workflows.ValidSHA256(out.SHA256) {
		return deploy.Provenance{}, usageErrorf("--sha256: want 64 hex digits (as sha256sum prints them), found %q", p.sha256)
	}
	return out, nil
}
