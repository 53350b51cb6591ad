package bus

import (
	"context"
	"testing"
	"time"
)

// TestRegistryListAfterLeave: when the newest message of the registry is
// a host leaving (a delete marker), List returns at once without it. On the
// old code the listing ignored delete markers, so it waited for a message
// at least as recent as the marker until another host rewrote its entry
// (up to a third of the TTL) or the attempt timed out: every `signet ping`
// after a clean stop stalled.
func TestRegistryListAfterLeave(t *testing.T) {
	_, reg := testRegistry(t, "leave", time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	for _, id := range []string{"web1", "web2"} {
		if err := reg.Put(ctx, newSigner(t), &Registration{Identity: id, Collective: "leave", Started: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	if err := reg.Delete(ctx, "web2"); err != nil {
		t.Fatal(err)
	}
	regs, err := reg.list(ctx)
	if err != nil {
		t.Fatalf("list after a leave: %v", err)
	}
	if len(regs) != 1 || regs[0].Identity != "web1" {
		t.Fatalf("list = %v, want web1 only", regs)
	}
}
