package bus

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"golang.org/x/crypto/ssh"

	"github.com/signetbus/signet/internal/broker/brokertest"
	"github.com/signetbus/signet/internal/keys/keytest"
)

// BenchmarkApprovalList measures `signet approvals` by message gets (no
// consumer; see ApprovalStore): one List of N pending requests with two
// approvals each, on a real embedded broker.
func BenchmarkApprovalList(b *testing.B) {
	for _, n := range []int{10, 100} {
		b.Run(fmt.Sprintf("pending=%d", n), func(b *testing.B) {
			s := brokertest.Start(b)
			nc, err := nats.Connect(s.ClientURL())
			if err != nil {
				b.Fatal(err)
			}
			defer nc.Close()
			ctx := context.Background()
			store, err := OpenApprovalStore(ctx, nc, "t")
			if err != nil {
				b.Fatal(err)
			}
			alice, carol, dave := keytest.Signer(b), keytest.Signer(b), keytest.Signer(b)
			now := time.Now()
			for i := 0; i < n; i++ {
				sub := ApprovalSubject{Kind: SubjectRequest, Collective: "t", Requester: ssh.FingerprintSHA256(alice.PublicKey()), RequesterName: "alice",
					Reason: fmt.Sprintf("CHG-%d", i), Expires: now.Add(time.Hour).UnixMilli(), Agent: "rpcutil", Action: "ping", Targets: []string{"web1"}}
				id := NewID()
				if err := store.Submit(ctx, alice, &PendingRequest{ID: id, Subject: sub, Created: now.UnixMilli()}); err != nil {
					b.Fatal(err)
				}
				for _, k := range []ssh.Signer{carol, dave} {
					sa, err := SignApproval(k, "x", &sub, now, now.Add(time.Hour))
					if err != nil {
						b.Fatal(err)
					}
					if err := store.Approve(ctx, id, sa); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				l, err := store.List(ctx, now)
				if err != nil || len(l) != n {
					b.Fatalf("listed %d (%v)", len(l), err)
				}
			}
		})
	}
}
