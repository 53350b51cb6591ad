package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats.go"
	"golang.org/x/crypto/ssh"

	"github.com/signetbus/signet/agents"
	"github.com/signetbus/signet/bus"
	"github.com/signetbus/signet/bus/control"
	"github.com/signetbus/signet/internal/replicas"
)

// controlReach measures, on a running fleet, how long from publishing an
// admin-signed lock (what `signet lock --all` does after loading its
// config) until every host refuses a ping, and until the last host's
// audit log records applying it. It locks and unlocks rounds times, then
// revokes the operator's key once (which ends the fleet's use).
func controlReach(nc *nats.Conn, c *bus.Client, op ssh.Signer, collective string, auditOf func(i int) string, n, rounds int) error {
	ctx := context.Background()
	store, err := control.OpenStore(ctx, nc, collective, replicas.Auto)
	if err != nil {
		return err
	}
	trust := func(*control.Signed) error { return nil }
	refusing := func(code string) (int, error) {
		out, err := c.Do(ctx, bus.Query{Agent: "rpcutil", Action: "ping", Timeout: 20 * time.Second})
		if err != nil {
			return 0, err
		}
		k := 0
		for _, r := range out.Results {
			if r.Reply != nil && r.Reply.Code == code {
				k++
			}
		}
		return k, nil
	}
	// The record carries the time the host applied the document; it is
	// written just after, so a host may refuse a moment before its record
	// is on disk.
	lastApplied := func(start time.Time, decision string) (time.Duration, error) {
		var last time.Time
		for i := 0; i < n; i++ {
			var seen time.Time
			for wait := time.Now().Add(10 * time.Second); seen.IsZero(); time.Sleep(20 * time.Millisecond) {
				b, err := os.ReadFile(auditOf(i))
				if err != nil {
					return 0, err
				}
				for _, line := range splitLines(b) {
					var rec bus.AuditRecord
					if json.Unmarshal(line, &rec) == nil && rec.Decision == decision && rec.Time.After(start) {
						seen = rec.Time
					}
				}
				if seen.IsZero() && time.Now().After(wait) {
					return 0, fmt.Errorf("host %d refuses but audited no %s", i, decision)
				}
			}
			if seen.After(last) {
				last = seen
			}
		}
		return last.Sub(start), nil
	}
	var published []time.Duration
	reach := func(code, decision string, publish func() error) (total, applied time.Duration, err error) {
		start := time.Now()
		if err := publish(); err != nil {
			return 0, 0, err
		}
		published = append(published, time.Since(start))
		for {
			k, err := refusing(code)
			if err != nil {
				return 0, 0, err
			}
			if k == n {
				total = time.Since(start)
				break
			}
			if time.Since(start) > time.Minute {
				return 0, 0, fmt.Errorf("only %d of %d hosts refuse after a minute", k, n)
			}
		}
		applied, err = lastApplied(start, decision)
		return total, applied, err
	}
	var totals, applieds []time.Duration
	for r := 0; r < rounds; r++ {
		total, applied, err := reach(control.CodeLocked, agents.DecisionLock, func() error {
			_, err := store.Update(ctx, control.UpdateOptions{Kind: control.KindLocks, Signer: op, By: "bench", TrustBase: trust,
				Edit: func(d *control.Document) error {
					d.Locks = []control.Lock{{ID: fmt.Sprintf("L%d", d.Seq), Scope: control.Scope{All: true}, Reason: "bench", By: "bench", At: d.Issued}}
					return nil
				}})
			return err
		})
		if err != nil {
			return err
		}
		totals, applieds = append(totals, total), append(applieds, applied)
		if _, err := store.Update(ctx, control.UpdateOptions{Kind: control.KindLocks, Signer: op, By: "bench", TrustBase: trust,
			Edit: func(d *control.Document) error { d.Locks = nil; return nil }}); err != nil {
			return err
		}
		for {
			k, err := refusing(control.CodeLocked)
			if err != nil {
				return err
			}
			if k == 0 {
				break
			}
		}
	}
	fmt.Printf("lock reaching %d real signetd processes: publish %s, until all refuse %s, until the last host applied %s\n", n, summarize(published), summarize(totals), summarize(applieds))
	total, applied, err := reach(control.CodeRevoked, agents.DecisionRevoke, func() error {
		_, err := store.Update(ctx, control.UpdateOptions{Kind: control.KindRevocations, Signer: op, By: "bench", TrustBase: trust,
			Edit: func(d *control.Document) error {
				d.Revoked = append(d.Revoked, control.Revocation{Key: ssh.FingerprintSHA256(op.PublicKey()), Reason: "bench", By: "bench", At: d.Issued})
				return nil
			}})
		return err
	})
	if err != nil {
		return err
	}
	fmt.Printf("revocation reaching %d real signetd processes (one round): until all refuse %s, until the last host applied %s\n", n,
		total.Round(time.Millisecond), applied.Round(time.Millisecond))
	return nil
}

func splitLines(b []byte) [][]byte {
	var out [][]byte
	start := 0
	for i, c := range b {
		if c == '\n' {
			out = append(out, b[start:i])
			start = i + 1
		}
	}
	return out
}
