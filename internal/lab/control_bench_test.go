package lab_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/signetbus/signet/agents"
	"github.com/signetbus/signet/bus"
	"github.com/signetbus/signet/bus/control"
	"github.com/signetbus/signet/internal/cli"
	"github.com/signetbus/signet/internal/keys"
	"github.com/signetbus/signet/internal/lab"
)

// reachLab is a lab of n hosts with a client that probes all of them.
type reachLab struct {
	l       *lab.Lab
	client  *bus.Client
	targets []string
}

func startReachLab(b *testing.B, n int) *reachLab {
	b.Helper()
	l, err := lab.Start(context.Background(), lab.Options{Dir: b.TempDir(), Hosts: n})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Stop() })
	signer, err := keys.LoadSigner(filepath.Join(l.Dir, "operator_key"), nil)
	if err != nil {
		b.Fatal(err)
	}
	known, err := keys.LoadKnownHosts(filepath.Join(l.Dir, "known_hosts"))
	if err != nil {
		b.Fatal(err)
	}
	nc, err := nats.Connect(l.Broker.ClientURL())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(nc.Close)
	c, err := bus.NewClient(bus.ClientConfig{Conn: nc, Collective: l.Collective, Signer: signer, User: "probe", HostKeys: known})
	if err != nil {
		b.Fatal(err)
	}
	r := &reachLab{l: l, client: c}
	for _, h := range l.Hosts {
		r.targets = append(r.targets, h.Identity)
	}
	return r
}

// refusing pings every host and counts those refusing with code.
func (r *reachLab) refusing(b *testing.B, code string) int {
	out, err := r.client.Do(context.Background(), bus.Query{Agent: "rpcutil", Action: "ping", Targets: r.targets, Timeout: 10 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	n := 0
	for _, res := range out.Results {
		if res.Reply != nil && res.Reply.Code == code {
			n++
		}
	}
	return n
}

// reach runs the signet command and returns how long until every host
// refuses with code, how long the command took, and how long the last
// probe took (the resolution of the first figure).
func (r *reachLab) reach(b *testing.B, code string, args ...string) (total, command, probe, applied time.Duration) {
	var out, errb bytes.Buffer
	env := map[string]string{"SIGNET_CONFIG": r.l.ClientConfig}
	start := time.Now()
	if rc := cli.Main(context.Background(), args, cli.IO{In: strings.NewReader(""), Out: &out, Err: &errb, Getenv: func(k string) string { return env[k] }}); rc != 0 {
		b.Fatalf("signet %s: exit %d %s", strings.Join(args, " "), rc, errb.String())
	}
	command = time.Since(start)
	for {
		p := time.Now()
		n := r.refusing(b, code)
		if n == len(r.targets) {
			total, probe = time.Since(start), time.Since(p)
			b.StopTimer()
			defer b.StartTimer()
			return total, command, probe, r.lastApplied(b, start)
		}
		if time.Since(start) > time.Minute {
			b.Fatalf("only %d of %d hosts refuse after a minute", n, len(r.targets))
		}
	}
}

// lastApplied reads every host's audit log and returns how long after
// start the last host recorded applying a control document (a lock or a
// revocation record carries the time the host applied it).
func (r *reachLab) lastApplied(b *testing.B, start time.Time) time.Duration {
	var last time.Time
	for _, h := range r.l.Hosts {
		// The record is written just after the host starts refusing.
		var seen time.Time
		for wait := time.Now().Add(10 * time.Second); seen.IsZero(); time.Sleep(20 * time.Millisecond) {
			f, err := os.Open(filepath.Join(h.Dir, "audit.jsonl"))
			if err != nil {
				b.Fatal(err)
			}
			dec := json.NewDecoder(f)
			for {
				var rec bus.AuditRecord
				if err := dec.Decode(&rec); err != nil {
					break
				}
				if (rec.Decision == agents.DecisionLock || rec.Decision == agents.DecisionRevoke) && rec.Time.After(start) {
					seen = rec.Time
				}
			}
			f.Close()
			if seen.IsZero() && time.Now().After(wait) {
				b.Fatalf("%s refuses but audited no control document", h.Identity)
			}
		}
		if seen.After(last) {
			last = seen
		}
	}
	return last.Sub(start)
}

// BenchmarkLockReach200 measures, on a 200-host lab (in-process
// responders, each with its own broker connection and watch), how long
// from running `signet lock --all` until every host refuses a ping.
//
//	go test ./internal/lab -run '^$' -bench LockReach200 -benchtime 5x
func BenchmarkLockReach200(b *testing.B) {
	r := startReachLab(b, 200)
	var total, command, probe, applied time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tt, c, p, a := r.reach(b, control.CodeLocked, "lock", "--all", "--reason", "bench")
		total, command, probe, applied = total+tt, command+c, probe+p, applied+a
		b.StopTimer()
		var out, errb bytes.Buffer
		env := map[string]string{"SIGNET_CONFIG": r.l.ClientConfig}
		if rc := cli.Main(context.Background(), []string{"unlock", "--all"}, cli.IO{In: strings.NewReader(""), Out: &out, Err: &errb, Getenv: func(k string) string { return env[k] }}); rc != 0 {
			b.Fatal(errb.String())
		}
		for r.refusing(b, control.CodeLocked) > 0 {
		}
		b.StartTimer()
	}
	n := float64(b.N)
	b.ReportMetric(float64(total.Milliseconds())/n, "ms-until-all-refuse")
	b.ReportMetric(float64(command.Milliseconds())/n, "ms-command")
	b.ReportMetric(float64(probe.Milliseconds())/n, "ms-last-probe")
	b.ReportMetric(float64(applied.Milliseconds())/n, "ms-until-last-host-applied")
}

// BenchmarkRevokeReach200 is the same for `signet revoke` of the key the
// probe signs with. A revoked admin cannot take it back, so each round
// starts a new lab (not timed).
//
//	go test ./internal/lab -run '^$' -bench RevokeReach200 -benchtime 3x
func BenchmarkRevokeReach200(b *testing.B) {
	var total, command, probe, applied time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		r := startReachLab(b, 200)
		b.StartTimer()
		tt, c, p, a := r.reach(b, control.CodeRevoked, "revoke", filepath.Join(r.l.Dir, "operator_key.pub"), "--reason", "bench")
		total, command, probe, applied = total+tt, command+c, probe+p, applied+a
		b.StopTimer()
		r.l.Stop()
		b.StartTimer()
	}
	n := float64(b.N)
	b.ReportMetric(float64(total.Milliseconds())/n, "ms-until-all-refuse")
	b.ReportMetric(float64(command.Milliseconds())/n, "ms-command")
	b.ReportMetric(float64(probe.Milliseconds())/n, "ms-last-probe")
	b.ReportMetric(float64(applied.Milliseconds())/n, "ms-until-last-host-applied")
}
