package cli

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/signetbus/signet/bus"
	"github.com/signetbus/signet/internal/audit"
	"github.com/signetbus/signet/internal/audit/audittest"
	"github.com/signetbus/signet/internal/audit/ship"
	"github.com/signetbus/signet/internal/broker/brokertest"
	"github.com/signetbus/signet/internal/keys/keytest"
)

// Each filter of `signet audit` on its own, against records shipped to a
// real broker: each picks exactly the records it names.
func TestAuditFilters(t *testing.T) {
	s := brokertest.Start(t)
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	dir := t.TempDir()
	alice, bob := keytest.Signer(t), keytest.Signer(t)
	day := time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)
	// request id: host, operator, run, agent.action, decision, time
	recs := []struct {
		id, host, op, run, agent, action, decision string
		at                                         time.Time
	}{
		{"a1", "web1", "alice", "run7f3a", "package", "update", bus.DecisionAccepted, day},
		{"a2", "web1", "bob", "", "rpcutil", "ping", bus.DecisionAccepted, day.Add(time.Hour)},
		{"a3", "db1", "alice", "run7f3a", "package", "update", bus.DecisionRefused, day.Add(2 * time.Hour)},
		{"a4", "db1", "bob", "run9c1e", "service", "restart", bus.DecisionAccepted, day.Add(48 * time.Hour)},
	}
	for _, host := range []string{"web1", "db1"} {
		path := filepath.Join(dir, host+".jsonl")
		l, err := audit.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		l.Identity = host
		n := 0
		for _, r := range recs {
			if r.host != host {
				continue
			}
			op := alice
			if r.op == "bob" {
				op = bob
			}
			rec := audittest.RunRecord(t, op, r.op, host, r.id, r.run, r.agent, r.action, nil)
			rec.Time, rec.Decision = r.at, r.decision
			if err := l.Audit(rec); err != nil {
				t.Fatal(err)
			}
			n++
		}
		l.Close()
		sh, err := ship.New(ship.Config{Conn: nc, Collective: "signet", Identity: host, Path: path, Poll: 10 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- sh.Run(ctx) }()
		for sh.Acked() < uint64(n) {
			time.Sleep(10 * time.Millisecond)
		}
		cancel()
		<-done
	}
	cfg := filepath.Join(dir, "client.yaml")
	os.WriteFile(cfg, fmt.Appendf(nil, "nats: {urls: [%q]}\n", s.ClientURL()), 0o600)

	for _, c := range []struct {
		flags []string
		want  []string // request ids, in stream order
	}{
		{nil, []string{"a1", "a2", "a3", "a4"}},
		{[]string{"--host", "db1"}, []string{"a3", "a4"}},
		{[]string{"--operator", "bob"}, []string{"a2", "a4"}},
		{[]string{"--agent", "package"}, []string{"a1", "a3"}},
		{[]string{"--action", "restart"}, []string{"a4"}},
		{[]string{"--decision", "refused"}, []string{"a3"}},
		{[]string{"--since", "2026-11-24T10:00:00Z", "--until", "2026-11-25T00:00:00Z"}, []string{"a2", "a3"}},
		{[]string{"--run", "run7f3a"}, []string{"a1", "a3"}},
		{[]string{"--run", "run7f3a", "--host", "db1"}, []string{"a3"}},
		{[]string{"--request", "a2"}, []string{"a2"}},
	} {
		t.Run(strings.Join(c.flags, " "), func(t *testing.T) {
			code, out, errs := runSignet(t, append([]string{"--config", cfg, "audit"}, c.flags...)...)
			if code != 0 {
				t.Fatalf("exit %d\n%s%s", code, out, errs)
			}
			var got []string
			for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
				f := strings.Split(line, "\t")
				if len(f) < 10 {
					continue
				}
				got = append(got, f[8])
				if f[9] != "" && !strings.HasPrefix(f[9], "run") {
					t.Errorf("RUN column %q", f[9])
				}
			}
			slices.Sort(got)
			if !slices.Equal(got, c.want) {
				t.Fatalf("got requests %v, want %v\n%s", got, c.want, out)
			}
		})
	}
}
