package workflows

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/signetbus/signet/internal/grammar"
)

// DefaultPreflightTimeout bounds the preflight ping. A host the registry
// does not know fails at once; only a registered host that does not answer
// is waited for this long.
const DefaultPreflightTimeout = 10 * time.Second

// Preflight is what a run knows about its fleet before it touches it: the
// hosts it expects (the discovery filter against the registry, or an
// inventory file), which of them answered a signed ping, and which are
// missing and why. A run refuses to start with a host missing unless it
// was allowed (`--allow-missing`); the record is kept in the run state.
type Preflight struct {
	// Source is where the expected hosts came from: "registry" or
	// "inventory PATH".
	Source string `json:"source"`
	// Expected lists the hosts the run expects, sorted.
	Expected []string `json:"expected"`
	// Answered lists the expected hosts that answered the ping.
	Answered []string `json:"answered"`
	// Missing lists the expected hosts the run cannot work on, with why.
	Missing []MissingHost `json:"missing,omitempty"`
	// Extra lists the hosts the discovery filter found that an inventory
	// does not name: the run leaves them alone.
	Extra []string `json:"extra,omitempty"`
	// AllowMissing is set when the run was started with hosts missing on
	// purpose (`--allow-missing`); the missing hosts are not in its plan.
	AllowMissing bool `json:"allow_missing,omitempty"`
}

// MissingHost is an expected host the run cannot work on.
type MissingHost struct {
	Host string `json:"host"`
	// Reason is why: "no response within 10s", "not in the fleet
	// registry: ...", "does not match hosts role=app env=prod".
	Reason string `json:"reason"`
}

func (m MissingHost) String() string { return m.Host + ": " + m.Reason }

// MissingNames returns the missing hosts' names.
func (p *Preflight) MissingNames() []string {
	out := make([]string, 0, len(p.Missing))
	for _, m := range p.Missing {
		out = append(out, m.Host)
	}
	return out
}

// RunPreflight pings every expected host directly (rpcutil.ping, signed
// and verified like any request) and compares: an expected host that does
// not answer OK is missing. discovered are the hosts the discovery filter
// found; when source is an inventory, an inventory host that answered but
// was not discovered is missing too (it does not match filter), and a
// discovered host the inventory does not name is extra. The hosts the run
// may work on are discovered ∩ expected ∩ answered ([Preflight.Usable]).
func RunPreflight(ctx context.Context, c Caller, source string, expected []string, discovered []Host, filter []string, timeout time.Duration) (*Preflight, error) {
	if timeout <= 0 {
		timeout = DefaultPreflightTimeout
	}
	exp := slices.Clone(expected)
	slices.SortFunc(exp, func(a, b string) int { return cmpNatural(a, b) })
	exp = slices.Compact(exp)
	p := &Preflight{Source: source, Expected: exp}
	if len(exp) == 0 {
		return p, nil
	}
	results, err := c.Call(ctx, Call{Agent: "rpcutil", Action: "ping", Hosts: exp, Timeout: timeout})
	if err != nil && len(results) == 0 {
		return nil, fmt.Errorf("preflight ping: %w", err)
	}
	why := map[string]string{}
	for _, h := range exp {
		why[h] = fmt.Sprintf("no response within %s", timeout)
	}
	for _, r := range results {
		if _, ok := why[r.Host]; !ok {
			continue
		}
		switch {
		case r.OK:
			delete(why, r.Host)
		case r.Error != "":
			why[r.Host] = r.Error
		case !r.NoResponse:
			why[r.Host] = "ping failed"
		}
	}
	found := map[string]bool{}
	for _, h := range discovered {
		found[h.Identity] = true
	}
	inExp := map[string]bool{}
	for _, h := range exp {
		inExp[h] = true
		if r, ok := why[h]; ok {
			p.Missing = append(p.Missing, MissingHost{Host: h, Reason: r})
			continue
		}
		p.Answered = append(p.Answered, h)
		if !found[h] {
			p.Missing = append(p.Missing, MissingHost{Host: h, Reason: "answers, but does not match hosts " + strings.Join(filter, " ")})
		}
	}
	for _, h := range discovered {
		if !inExp[h.Identity] {
			p.Extra = append(p.Extra, h.Identity)
		}
	}
	slices.SortFunc(p.Extra, cmpNatural)
	return p, nil
}

// Usable returns the discovered hosts the run may work on: expected,
// answered and not missing.
func (p *Preflight) Usable(discovered []Host) []Host {
	ok := map[string]bool{}
	for _, h := range p.Answered {
		ok[h] = true
	}
	for _, m := range p.Missing {
		delete(ok, m.Host)
	}
	var out []Host
	for _, h := range discovered {
		if ok[h.Identity] {
			out = append(out, h)
		}
	}
	return out
}

// WriteText writes the preflight for people (`--plan`, the confirmation).
func (p *Preflight) WriteText(w io.Writer) {
	fmt.Fprintf(w, "preflight: %d hosts expected (%s), %d answered a ping\n", len(p.Expected), p.Source, len(p.Answered))
	for _, m := range p.Missing {
		fmt.Fprintf(w, "  missing: %s\n", m)
	}
	if len(p.Extra) > 0 {
		fmt.Fprintf(w, "  not in the inventory, left alone: %s\n", strings.Join(p.Extra, ", "))
	}
	if len(p.Missing) > 0 {
		if p.AllowMissing {
			fmt.Fprintf(w, "  --allow-missing: the run goes on without %s\n", strings.Join(p.MissingNames(), ", "))
		} else {
			fmt.Fprintln(w, "  the run refuses to start with hosts missing unless --allow-missing is given")
		}
	}
}

// MissingHostsError refuses a run with expected hosts missing.
type MissingHostsError struct {
	Missing []MissingHost
	// Expected is how many hosts the run expected.
	Expected int
}

func (e *MissingHostsError) Error() string {
	parts := make([]string, 0, len(e.Missing))
	for _, m := range e.Missing {
		parts = append(parts, m.String())
	}
	return fmt.Sprintf("%d of %d expected hosts missing, nothing was touched: %s", len(e.Missing), e.Expected, strings.Join(parts, "; "))
}

// ReadInventory reads an inventory file: one host identity per line;
// blank lines and lines starting with '#' are ignored. A line that is not
// a valid identity, or a host named twice, is an error naming the line.
func ReadInventory(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("inventory: %w", err)
	}
	defer f.Close()
	var out []string
	seen := map[string]int{}
	sc := bufio.NewScanner(io.LimitReader(f, 16<<20))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if err := grammar.CheckIdentity(line); err != nil {
			return nil, fmt.Errorf("inventory %s:%d: %w", path, n, err)
		}
		if prev, dup := seen[line]; dup {
			return nil, fmt.Errorf("inventory %s:%d: %s already named on line %d", path, n, line, prev)
		}
		seen[line] = n
		out = append(out, line)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("inventory %s: %w", path, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("inventory %s: names no host", path)
	}
	return out, nil
}

func cmpNatural(a, b string) int {
	switch {
	case naturalLess(a, b):
		return -1
	case naturalLess(b, a):
		return 1
	}
	return 0
}
