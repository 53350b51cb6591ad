// Package shard maps a host identity to its shard at each of a few shard
// counts: the one function behind the shard subjects a host listens on
// (bus.ShardSubject), the client's grouping of a request's targets, and
// the broker's permission for a responder to listen on its own shards.
package shard

import (
	"hash/fnv"
	"strconv"
)

// Sizes are the shard counts a host listens at: a client picks, per
// request, the one whose shards hold at most a chunk (64) of its targets.
// 16 serves about 1000 targets, 256 about 16,000, 4096 more.
var Sizes = []int{16, 256, 4096}

// Of is identity's shard among size shards: FNV-1a (32 bits) of the
// identity modulo size.
func Of(identity string, size int) int {
	h := fnv.New32a()
	h.Write([]byte(identity))
	return int(h.Sum32() % uint32(size))
}

// Subject is the shard subject of identity's shard among size shards:
// COLLECTIVE.shard.SIZE.N (bus.ShardSubject).
func Subject(collective string, size int, identity string) string {
	return SubjectOf(collective, size, Of(identity, size))
}

// SubjectOf is the subject of shard n among size shards.
func SubjectOf(collective string, size, n int) string {
	return collective + ".shard." + strconv.Itoa(size) + "." + strconv.Itoa(n)
}
