package shard

import "testing"

// The mapping is part of the wire protocol (hosts and clients of
// different releases must agree): pinned values.
func TestOfIsStable(t *testing.T) {
	for _, c := range []struct {
		id         string
		size, want int
	}{
		{"web1", 16, int(fnv32a("web1") % 16)},
		{"web1", 4096, int(fnv32a("web1") % 4096)},
		{"host-001.dc1.example.com", 256, int(fnv32a("host-001.dc1.example.com") % 256)},
	} {
		if got := Of(c.id, c.size); got != c.want {
			t.Errorf("Of(%q, %d) = %d, want %d", c.id, c.size, got, c.want)
		}
	}
	if got := fnv32a("a"); got != 0xe40c292c { // FNV-1a 32 of "a", from the reference
		t.Fatalf("fnv32a(a) = %#x", got)
	}
}

// fnv32a is the reference FNV-1a, written out.
func fnv32a(s string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return h
}
