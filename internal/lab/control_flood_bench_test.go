package lab_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/signetbus/signet/bus/control"
	"github.com/signetbus/signet/internal/cli"
)

// BenchmarkLockReachFlooded200 is BenchmarkLockReach200 with a broker
// user flooding the locks key: before each lock, 70 junk revisions (more
// than the bucket keeps, so the command builds on the hosts' document),
// and during it junk every 5 ms (every host's watch receives each one, so
// a faster flood on 200 hosts measures the broker, not the command).
//
//	go test ./internal/lab -run '^$' -bench 'LockReach(Flooded)?200' -benchtime 3x
func BenchmarkLockReachFlooded200(b *testing.B) {
	r := startReachLab(b, 200)
	nc, err := nats.Connect(r.l.Broker.ClientURL())
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	subject := "$KV." + control.Bucket(r.l.Collective) + "." + control.KindLocks
	env := map[string]string{"SIGNET_CONFIG": r.l.ClientConfig}
	signet := func(args ...string) {
		var out, errb bytes.Buffer
		if rc := cli.Main(context.Background(), args, cli.IO{In: strings.NewReader(""), Out: &out, Err: &errb, Getenv: func(k string) string { return env[k] }}); rc != 0 {
			b.Fatal(errb.String())
		}
	}
	signet("lock", "--app", "none", "--reason", "a base to recover")
	var total, command, probe, applied time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		for j := 0; j < 70; j++ {
			if err := nc.Publish(subject, []byte(fmt.Sprintf(`{"junk":%d}`, j))); err != nil {
				b.Fatal(err)
			}
		}
		if err := nc.Flush(); err != nil {
			b.Fatal(err)
		}
		done := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; ; j++ {
				select {
				case <-done:
					return
				case <-time.After(5 * time.Millisecond):
				}
				_ = nc.Publish(subject, []byte(fmt.Sprintf(`{"junk":%d}`, j)))
			}
		}()
		b.StartTimer()
		tt, c, p, a := r.reach(b, control.CodeLocked, "lock", "--all", "--reason", "bench")
		total, command, probe, applied = total+tt, command+c, probe+p, applied+a
		b.StopTimer()
		close(done)
		wg.Wait()
		signet("unlock", "--all")
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
