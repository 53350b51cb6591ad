package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/signetbus/signet/bus"
	"github.com/signetbus/signet/internal/keys"
	"github.com/signetbus/signet/internal/lab"
)

// labScale starts a `signet lab` fleet of n in-process responders (each with
// its own broker connection, host key, audit log and registry entry, as
// the lab command runs them), and reports:
//
//   - the start-up time until every host has registered;
//   - memory per responder: the growth of the Go heap and stacks and of
//     the process's RSS, divided by n (broker, client and responders all
//     live in this process, so the broker's per-connection state counts);
//   - discovery: listing the registry of n hosts (median of rounds);
//   - `signet ping` without targets: registry, signed request, n verified
//     replies (median and p90 of rounds).
func labScale(n, rounds int) error {
	dir, err := os.MkdirTemp("", "signet-bench-lab")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	heap0, rss0 := memNow()
	start := time.Now()
	l, err := lab.Start(context.Background(), lab.Options{Dir: dir, Hosts: n})
	if err != nil {
		return err
	}
	defer l.Stop()
	up := time.Since(start)
	heap1, rss1 := memNow()
	if profile != "" {
		f, err := os.Create(fmt.Sprintf("%s.lab%d.heap", profile, n))
		if err != nil {
			return err
		}
		err = pprof.WriteHeapProfile(f)
		f.Close()
		if err != nil {
			return err
		}
	}
	nc, err := nats.Connect(l.Broker.ClientURL())
	if err != nil {
		return err
	}
	defer nc.Close()
	ctx := context.Background()
	reg, err := bus.OpenRegistry(ctx, nc, l.Collective)
	if err != nil {
		return err
	}
	var lists []time.Duration
	for r := -1; r < rounds; r++ {
		t := time.Now()
		regs, err := reg.List(ctx)
		if err != nil {
			return err
		}
		if len(regs) != n {
			return fmt.Errorf("registry lists %d of %d hosts", len(regs), n)
		}
		if r >= 0 {
			lists = append(lists, time.Since(t))
		}
	}
	op, err := keys.LoadSigner(filepath.Join(dir, "operator_key"), nil)
	if err != nil {
		return err
	}
	known, err := keys.LoadKnownHosts(filepath.Join(dir, "known_hosts"))
	if err != nil {
		return err
	}
	c, err := bus.NewClient(bus.ClientConfig{Conn: nc, Collective: l.Collective, Signer: op, User: "bench", HostKeys: known, Registry: reg})
	if err != nil {
		return err
	}
	var pings []time.Duration
	for r := -1; r < rounds; r++ {
		t := time.Now()
		out, err := c.Do(ctx, bus.Query{Agent: "rpcutil", Action: "ping", Timeout: time.Minute})
		if err != nil {
			return err
		}
		if ok, _, _ := out.Counts(); ok != n {
			var bad []string
			for _, r := range out.Results {
				if r.Status != bus.ResultOK && len(bad) < 5 {
					bad = append(bad, fmt.Sprintf("%s: %s %s", r.Identity, r.Status, r.Error))
				}
			}
			return fmt.Errorf("lab ping: %d of %d ok (%s)", ok, n, strings.Join(bad, "; "))
		}
		if r >= 0 {
			pings = append(pings, time.Since(t))
		}
	}
	fmt.Printf("lab of %d hosts: up and registered in %.1f s; per responder %.1f kB heap+stacks, %.1f kB RSS; registry list %s; ping via registry %s\n",
		n, up.Seconds(), float64(heap1-heap0)/1024/float64(n), float64(rss1-rss0)/float64(n), summarize(lists), summarize(pings))
	return nil
}

// memNow returns the Go heap and stacks in use after a GC, in bytes, and
// the process's resident set size in kB.
func memNow() (heap uint64, rssKB int) {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	f, err := os.Open("/proc/self/status")
	if err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
				rssKB, _ = strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			}
		}
	}
	return m.HeapInuse + m.StackInuse, rssKB
}
