package deploy

import (
	"fmt"
	"maps"
	"net/url"
	"slices"

	"github.com/signetbus/signet/bus"
	"github.com/signetbus/signet/workflows"
)

// Host variables of the deploy's digest check.
const (
	// VarSHA256 is the digest of the deployed version's artifact, "" when
	// none is known; VarPreviousSHA256 the previous version's, used by
	// the rollback.
	VarSHA256         = "sha256"
	VarPreviousSHA256 = "previous_sha256"
)

// checkDigests checks an app file's sha256 map.
func checkDigests(m map[string]string) error {
	for _, v := range slices.Sorted(maps.Keys(m)) {
		if !ValidVersion(v) {
			return fmt.Errorf("sha256: want a package version as key, found %q", v)
		}
		if !workflows.ValidSHA256(m[v]) {
			return fmt.Errorf("sha256: %s: want 64 lowercase hex digits, found %q", v, m[v])
		}
	}
	return nil
}

// Provenance says who asked for a deploy and which artifacts it may
// install: it travels inside every signed request of the run.
type Provenance struct {
	// Ticket is the change ticket ("CHG-1234"); BuildURL the CI build
	// (Jenkins' BUILD_URL). Both land in every audit record of the run.
	Ticket, BuildURL string
	// SHA256 is the digest of the deployed version's artifact; it adds to
	// (and overrides) the app file's sha256 entry for that version.
	SHA256 string
}

// CleanBuildURL drops the user information, query and fragment of a CI
// build URL: it is signed into every request and written to every audit
// log, and must not carry a credential.
func CleanBuildURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return s // Check refuses it with its own words
	}
	u.User, u.RawQuery, u.Fragment, u.ForceQuery = nil, "", "", false
	return u.String()
}

// record sets the provenance of a new run's state: ticket, build URL and
// the digests of the app file with the flag's.
func (p Provenance) record(a *App, st *workflows.RunState) error {
	st.Ticket, st.BuildURL = p.Ticket, p.BuildURL
	if err := (&bus.Provenance{Ticket: st.Ticket, BuildURL: st.BuildURL}).Check(); err != nil {
		return fmt.Errorf("deploy %s: %w", a.Name, err)
	}
	if p.SHA256 != "" && !workflows.ValidSHA256(p.SHA256) {
		return fmt.Errorf("deploy %s: sha256: want 64 lowercase hex digits, found %q", a.Name, p.SHA256)
	}
	d := maps.Clone(a.SHA256)
	if p.SHA256 != "" {
		if d == nil {
			d = map[string]string{}
		}
		d[st.Version] = p.SHA256
	}
	st.Digests = d
	a.SHA256 = d
	return nil
}

// digestVars sets a host's digest variables from the run's digests; r.mu
// is the engine's concern, hs is Prepare's copy.
func digestVars(digests map[string]string, version string, hs *workflows.HostState) {
	if len(digests) == 0 {
		return
	}
	hs.Vars[VarSHA256] = digests[version]
	hs.Vars[VarPreviousSHA256] = digests[hs.Vars["previous"]]
}

// planVars are the variables --plan expands the steps with: the run's,
// and the deployed version's digest when the app lists digests.
func planVars(vars, digests map[string]string, version string) map[string]string {
	if len(digests) == 0 {
		return vars
	}
	out := maps.Clone(vars)
	out[VarSHA256] = digests[version]
	return out
}
