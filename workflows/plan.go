package workflows

import (
	"fmt"
	"sort"
	"strconv"

	"github.com/signetbus/signet/bus"
)

// errNoHosts is Plan's error for an empty host list: bus.ErrNoMatch, so
// that the CLI exits 3 as for any filter that matches nothing.
type errNoHosts struct{}

func (errNoHosts) Error() string        { return "plan: no hosts matched" }
func (errNoHosts) Is(target error) bool { return target == bus.ErrNoMatch }

// Plan groups hosts into batches of at most b.BatchSize hosts. Unless
// b.AllowSameZone is set, no batch holds two hosts of one zone (the
// b.ZoneFact fact; hosts without it share one zone), so a batch never takes
// two hosts of a zone out of rotation at once. Batches are spread across
// zones: each takes its hosts from the zones with the most hosts left. Plan
// is pure: same hosts, same batches. Identities are sorted naturally
// (web2 before web10) within a zone.
func Plan(hosts []Host, b Batching) ([][]string, error) {
	if len(hosts) == 0 {
		return nil, errNoHosts{}
	}
	if err := b.Validate(); err != nil {
		return nil, fmt.Errorf("plan: %w", err)
	}
	size, _ := ParseBatchSize(b.BatchSize, len(hosts))
	fact := b.ZoneFact
	if fact == "" {
		fact = "zone"
	}
	byZone := map[string][]string{}
	seen := map[string]bool{}
	for _, h := range hosts {
		if seen[h.Identity] {
			return nil, fmt.Errorf("plan: host %s discovered twice", h.Identity)
		}
		seen[h.Identity] = true
		z := h.Facts[fact]
		byZone[z] = append(byZone[z], h.Identity)
	}
	zones := make([]string, 0, len(byZone))
	for z, ids := range byZone {
		sort.Slice(ids, func(i, j int) bool { return naturalLess(ids[i], ids[j]) })
		zones = append(zones, z)
	}
	sort.Strings(zones)

	var batches [][]string
	left := len(hosts)
	for left > 0 {
		// Zones with the most hosts left first, so that the number of
		// batches is the smallest the zone rule allows.
		order := append([]string(nil), zones...)
		sort.SliceStable(order, func(i, j int) bool { return len(byZone[order[i]]) > len(byZone[order[j]]) })
		var batch []string
		for len(batch) < size && left > 0 {
			took := false
			for _, z := range order {
				if len(batch) == size {
					break
				}
				if len(byZone[z]) == 0 {
					continue
				}
				batch = append(batch, byZone[z][0])
				byZone[z] = byZone[z][1:]
				left--
				took = true
			}
			if !b.AllowSameZone || !took {
				break
			}
		}
		sort.Slice(batch, func(i, j int) bool { return naturalLess(batch[i], batch[j]) })
		batches = append(batches, batch)
	}
	return batches, nil
}

// naturalLess orders strings with their digit runs compared as numbers.
func naturalLess(a, b string) bool {
	for a != "" && b != "" {
		da, db := digits(a), digits(b)
		if da > 0 && db > 0 {
			na, _ := strconv.ParseUint(a[:min(da, 18)], 10, 64)
			nb, _ := strconv.ParseUint(b[:min(db, 18)], 10, 64)
			if na != nb {
				return na < nb
			}
			a, b = a[da:], b[db:]
			continue
		}
		if a[0] != b[0] {
			return a[0] < b[0]
		}
		a, b = a[1:], b[1:]
	}
	return len(a) < len(b)
}

func digits(s string) int {
	n := 0
	for n < len(s) && s[n] >= '0' && s[n] <= '9' {
		n++
	}
	return n
}
