package bus

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestChunksStayUnderTheSizeLimit: 10,000 hosts with the longest allowed
// names are split into signed requests that each stay well under the
// responder's default 64 KiB limit.
func TestChunksStayUnderTheSizeLimit(t *testing.T) {
	signer := newSigner(t)
	var ids []string
	for i := range 10000 {
		id := fmt.Sprintf("%05d.", i) + strings.Repeat("h", 247)
		if err := CheckIdentity(id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	for _, broadcast := range []bool{true, false} {
		parts, once := chunks(ids, broadcast)
		if once || len(parts) != (10000+directChunk-1)/directChunk {
			t.Fatalf("broadcast=%v: %d chunks, once=%v", broadcast, len(parts), once)
		}
		n := 0
		for _, p := range parts {
			n += len(p)
			frame, err := SignRequest(signer, &Request{Version: ProtocolVersion, ID: NewID(), Collective: "test", Agent: "rpcutil", Action: "ping",
				Targets: p, Created: time.Now().UnixMilli(), TTL: 60})
			if err != nil {
				t.Fatal(err)
			}
			if len(frame) > 20<<10 {
				t.Fatalf("a chunk of %d hosts is %d bytes", len(p), len(frame))
			}
		}
		if n != 10000 {
			t.Fatalf("chunks hold %d hosts", n)
		}
	}
	// A list that fits goes out once.
	if parts, once := chunks(ids[:8], true); !once || len(parts) != 1 {
		t.Fatalf("8 hosts: %d chunks, once=%v", len(parts), once)
	}
}

// TestLargeExpectedListIsChunked: a call to more hosts than one broadcast
// may name is sent in chunks to each host's own subject; the live hosts
// answer, the others are reported as not connected.
func TestLargeExpectedListIsChunked(t *testing.T) {
	f := startFleet(t, 3)
	expected := []string{"web1", "web2", "web3"}
	for i := range 200 {
		gone := fmt.Sprintf("gone%03d.%s", i, strings.Repeat("x", 100))
		f.keys[gone] = newSigner(t).PublicKey() // in known_hosts, not running
		expected = append(expected, gone)
	}
	c := f.client(t, f.operator, nil)
	out, err := c.Do(context.Background(), Query{Agent: "test", Action: "echo", Expected: expected, Timeout: 700 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.RequestIDs) != (203+directChunk-1)/directChunk {
		t.Fatalf("%d requests, want chunks of %d", len(out.RequestIDs), directChunk)
	}
	ok, failed, nr := out.Counts()
	if ok != 3 || failed != 0 || nr != 200 {
		t.Fatalf("ok=%d failed=%d no response=%d", ok, failed, nr)
	}
	for _, r := range out.Results {
		if r.Status == ResultNoResponse && !strings.Contains(r.Error, "the host is not connected") {
			t.Fatalf("%s: %s", r.Identity, r.Error)
		}
	}
}
