package bus

import (
	"slices"

	"github.com/signetbus/signet/internal/shard"
)

// shardPlan is what a registry listing tells the client about shard
// subjects (see "Targets and large fleets" in the package documentation):
// the shard counts each host listens at, and how many listening hosts each
// shard holds.
type shardPlan struct {
	sizes map[string][]int
	pop   map[shardKey]int
}

type shardKey struct{ size, n int }

// shardChunk is a chunk of targets published once on a shard subject.
type shardChunk struct {
	subject string
	targets []string
}

// newShardPlan reads the shard counts of a registry listing; nil when no
// host lists any.
func newShardPlan(regs []*Registration) *shardPlan {
	p := &shardPlan{sizes: map[string][]int{}, pop: map[shardKey]int{}}
	for _, r := range regs {
		if len(r.Shards) == 0 {
			continue
		}
		p.sizes[r.Identity] = r.Shards
		for _, size := range r.Shards {
			if size > 0 {
				p.pop[shardKey{size, shard.Of(r.Identity, size)}]++
			}
		}
	}
	if len(p.sizes) == 0 {
		return nil
	}
	return p
}

// split divides targets into chunks published once per shard and the
// rest, sent to each host's own subject. It uses the smallest shard count
// whose shards hold at most a chunk of the targets each, and a shard only
// when the request names at least half of the shard's listening hosts
// (the others receive it too, and drop it unverified); hosts that do not
// list that count are in the rest.
func (p *shardPlan) split(collective string, targets []string) (out []shardChunk, rest []string) {
	size := shard.Sizes[len(shard.Sizes)-1]
	for _, s := range shard.Sizes {
		if len(targets) <= s*directChunk {
			size = s
			break
		}
	}
	groups := map[int][]string{}
	for _, t := range targets {
		if slices.Contains(p.sizes[t], size) {
			n := shard.Of(t, size)
			groups[n] = append(groups[n], t)
			continue
		}
		rest = append(rest, t)
	}
	ns := make([]int, 0, len(groups))
	for n := range groups {
		ns = append(ns, n)
	}
	slices.Sort(ns)
	for _, n := range ns {
		g := groups[n]
		if 2*len(g) < p.pop[shardKey{size, n}] {
			rest = append(rest, g...)
			continue
		}
		for i := 0; i < len(g); i += directChunk {
			out = append(out, shardChunk{subject: shard.SubjectOf(collective, size, n), targets: g[i:min(i+directChunk, len(g))]})
		}
	}
	return out, rest
}
