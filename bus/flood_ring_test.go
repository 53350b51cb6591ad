package bus

import (
	"fmt"
	"runtime"
	"testing"
)

// TestDigestRingGrowsOnDemand: an idle responder's ring of refused frames
// costs next to nothing (it cost 266 kB per responder, preallocated, which
// made a 10,000-host lab 2.6 GB larger), and it still forgets the oldest
// digest once full.
func TestDigestRingGrowsOnDemand(t *testing.T) {
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	rings := make([]*digestRing, 10)
	for i := range rings {
		rings[i] = newDigestRing(4096)
	}
	runtime.ReadMemStats(&m1)
	if per := (m1.TotalAlloc - m0.TotalAlloc) / 10; per > 4<<10 {
		t.Errorf("an empty ring of 4096 allocates %d bytes", per)
	}
	d := newDigestRing(3)
	for i := range 3 {
		if d.repeat(fmt.Sprint(i)) {
			t.Fatalf("%d seen before", i)
		}
	}
	if !d.repeat("0") || !d.repeat("2") {
		t.Fatal("a remembered digest is not a repeat")
	}
	if d.repeat("3") { // evicts 0
		t.Fatal("3 seen before")
	}
	if d.repeat("0") { // 0 was forgotten; remembering it again evicts 1
		t.Fatal("0 still remembered after 3 newer digests")
	}
	if !d.repeat("3") || !d.repeat("2") || d.repeat("1") {
		t.Fatal("wrong eviction order")
	}
	if len(d.ring) != 3 || len(d.set) != 3 {
		t.Fatalf("ring %d set %d, want 3", len(d.ring), len(d.set))
	}
	_ = rings
}
