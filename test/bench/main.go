// Command bench measures signet against bare NATS on one embedded broker,
// in one run, and prints the ratios:
//
//   - fan-out: the time for one ping to be answered by all of N in-process
//     responders, for a bare NATS request fan-out, a bare fan-out doing one
//     ed25519 verify and one sign per responder, and signet's signed ping
//     (SSHSIG verify, replay and policy checks, audit record, signed reply,
//     reply verified by the client);
//   - throughput: signed requests per second to one responder, against
//     bare NATS request/reply, with a fixed number of requests in flight;
//   - idle RSS of a real signetd process;
//   - with -fleet, `signet ping` (registry, signed broadcast, verified
//     replies) to fleets of real signetd processes on one broker;
//   - with -host-cpu, the CPU time real signetd processes spend per
//     request, read from /proc (see hostcpu.go);
//   - with -lab, in-process lab fleets (as `signet lab --hosts N` runs
//     them): memory per responder, registry discovery and ping;
//   - with -window-hosts, a rolling deploy in lock-step batches against a
//     sliding window, with one host made slower.
//
// Run it with `go run ./test/bench` (see docs/performance.md).
package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"golang.org/x/crypto/ssh"

	"github.com/signetbus/signet/agents"
	"github.com/signetbus/signet/bus"
	"github.com/signetbus/signet/internal/audit"
	"github.com/signetbus/signet/internal/broker"
)

func main() {
	sizes := flag.String("n", "100,1000,5000", "fan-out sizes")
	rounds := flag.Int("rounds", 15, "measured rounds per mode and size")
	perConn := flag.Int("per-conn", 100, "responders sharing one broker connection")
	tput := flag.Duration("throughput", 5*time.Second, "duration of each throughput run (0 skips)")
	inflight := flag.Int("inflight", 32, "requests in flight in the throughput runs")
	rss := flag.Bool("rss", true, "measure an idle signetd's RSS (builds ./cmd/signetd)")
	deployHosts := flag.Int("deploy-hosts", 6, "hosts of the rolling deploy overhead run (0 skips)")
	fleet := flag.String("fleet", "", "sizes of real signetd fleets to ping, e.g. 10,50,200 (empty skips)")
	fleetControl := flag.Int("fleet-control", 0, "with -fleet: rounds of lock and unlock timed on each fleet, then one revocation (0 skips)")
	labSizes := flag.String("lab", "", "sizes of in-process lab fleets: memory per responder, registry discovery, ping (e.g. 1000,5000; empty skips)")
	windowHosts := flag.Int("window-hosts", 0, "hosts of the batches-vs-window deploy with one host made slower (0 skips)")
	windowStep := flag.Duration("window-step", 100*time.Millisecond, "with -window-hosts: the time every call takes")
	windowSlow := flag.Duration("window-slow", 10*time.Second, "with -window-hosts: how much slower web1's update is")
	hostCPUHosts := flag.Int("host-cpu", 0, "real signetd processes per fleet for the CPU-per-request measurement (0 skips)")
	hostCPURequests := flag.Int("host-cpu-requests", 300, "with -host-cpu: signed pings to every host per round")
	hostCPURounds := flag.Int("host-cpu-rounds", 3, "with -host-cpu: measured rounds per binary, alternating between binaries")
	hostCPUGap := flag.Duration("host-cpu-gap", 2*time.Millisecond, "with -host-cpu: pause between two pings, so that every request wakes sleeping hosts")
	hostCPUBins := flag.String("signetd", "", "with -host-cpu: comma-separated signetd binaries to compare (empty: build ./cmd/signetd)")
	hostCPUExtra := flag.String("host-cpu-config", "", "with -host-cpu: YAML lines added to every host's config")
	hostCPUPerf := flag.String("host-cpu-perf", "", "with -host-cpu: `perf record -g` one host of each fleet during an extra block, to FILE.cpuN")
	upload := flag.String("upload", "", "fleet sizes (e.g. 1000,10000): bytes of a fleet-wide ping, chunks per host against once per shard (empty skips)")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the signed fan-out runs to this file (and, with -lab, heap profiles to FILE.labN.heap)")
	flag.Parse()
	profile = *cpuprofile

	dir, err := os.MkdirTemp("", "signet-bench")
	check(err)
	defer os.RemoveAll(dir)
	s, err := broker.Start(broker.Config{Port: -1, StoreDir: filepath.Join(dir, "broker"), MaxPayload: 8 << 20})
	check(err)
	defer s.Shutdown()
	op := newSigner()
	authFile, policyFile := writeTrust(dir, op)

	fmt.Printf("signet bench: %s, GOMAXPROCS=%d, %d rounds (median, p90)\n\n", time.Now().Format(time.RFC3339), runtimeProcs(), *rounds)
	fmt.Printf("%-6s %-22s %-22s %-22s %-22s %-9s %-9s %-9s\n", "N", "bare NATS", "bare + ed25519", "bare + ed25519 x2", "signet signed ping",
		"/ed25519", "/ed x2", "/bare")
	for _, f := range strings.Split(*sizes, ",") {
		if strings.TrimSpace(f) == "" {
			continue
		}
		n, err := strconv.Atoi(strings.TrimSpace(f))
		check(err)
		bare := fanoutBare(s, n, *perConn, *rounds, cryptoNone)
		ed := fanoutBare(s, n, *perConn, *rounds, cryptoResponder)
		ed2 := fanoutBare(s, n, *perConn, *rounds, cryptoBothWays)
		signed := fanoutSigned(s, n, *perConn, *rounds, op, authFile, policyFile)
		ratio := func(a, b stats) string { return fmt.Sprintf("%.2fx", float64(a.median)/float64(b.median)) }
		fmt.Printf("%-6d %-22s %-22s %-22s %-22s %-9s %-9s %-9s\n", n, bare, ed, ed2, signed, ratio(signed, ed), ratio(signed, ed2), ratio(signed, bare))
	}
	if *fleet != "" {
		fmt.Println()
		for _, f := range strings.Split(*fleet, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			check(err)
			st, err := fleetPing(s, dir, op, n, *rounds, *fleetControl)
			check(err)
			fmt.Printf("signet ping to %d real signetd processes: %s\n", n, st)
		}
	}
	if *hostCPUHosts > 0 {
		fmt.Println()
		check(hostCPU(s, dir, op, hostCPUOptions{hosts: *hostCPUHosts, requests: *hostCPURequests, rounds: *hostCPURounds,
			gap: *hostCPUGap, bins: strings.Split(*hostCPUBins, ","), extra: *hostCPUExtra, perf: *hostCPUPerf}))
	}
	if *upload != "" {
		fmt.Println()
		for _, f := range strings.Split(*upload, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			check(err)
			check(uploadBytes(s, op, authFile, policyFile, n))
		}
	}
	if *labSizes != "" {
		fmt.Println()
		for _, f := range strings.Split(*labSizes, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			check(err)
			check(labScale(n, *rounds))
		}
	}
	if *tput > 0 {
		fmt.Println()
		b := throughputBare(s, *tput, *inflight)
		sg := throughputSigned(s, *tput, *inflight, op, authFile, policyFile)
		fmt.Printf("throughput to one responder, %d in flight, %s each:\n  bare NATS request/reply: %8.0f req/s\n  signet signed requests:  %8.0f req/s (%.2fx of bare)\n",
			*inflight, *tput, b, sg, sg/b)
	}
	if *deployHosts > 0 {
		fmt.Println()
		check(deployOverhead(*deployHosts, *rounds))
	}
	if *windowHosts > 0 {
		fmt.Println()
		check(windowVsBatches(*windowHosts, *windowStep, *windowSlow))
	}
	if *rss {
		fmt.Println()
		kb, err := idleRSS(s, dir, op)
		if err != nil {
			fmt.Printf("idle signetd RSS: not measured: %v\n", err)
		} else {
			fmt.Printf("idle signetd RSS after 10s: %.1f MB (%d kB)\n", float64(kb)/1024, kb)
		}
	}
}

type stats struct{ median, p90 time.Duration }

func (s stats) String() string {
	return fmt.Sprintf("%7.2f ms, %7.2f ms", float64(s.median.Microseconds())/1000, float64(s.p90.Microseconds())/1000)
}

func summarize(d []time.Duration) stats {
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return stats{median: d[len(d)/2], p90: d[len(d)*9/10]}
}

func connect(url string) *nats.Conn {
	nc, err := nats.Connect(url, nats.ReconnectBufSize(64<<20))
	check(err)
	return nc
}

func conns(s *server.Server, n, perConn int) []*nats.Conn {
	var cs []*nats.Conn
	for i := 0; i < (n+perConn-1)/perConn; i++ {
		cs = append(cs, connect(s.ClientURL()))
	}
	return cs
}

func closeAll(cs []*nats.Conn) {
	for _, c := range cs {
		c.Close()
	}
}

// Crypto done by the bare baselines.
const (
	cryptoNone      = iota
	cryptoResponder // each responder verifies the request and signs its reply
	cryptoBothWays  // and the client verifies every reply, as signet's client does
)

// fanoutBare times one publish answered by n subscribers.
func fanoutBare(s *server.Server, n, perConn, rounds int, mode int) stats {
	crypto := mode != cryptoNone
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	cs := conns(s, n, perConn)
	defer closeAll(cs)
	var hostPubs []ed25519.PublicKey
	subject := fmt.Sprintf("bare.%d.ping", mode)
	for i := 0; i < n; i++ {
		i := i
		nc := cs[i/perConn]
		_, hpriv, _ := ed25519.GenerateKey(rand.Reader)
		hostPubs = append(hostPubs, hpriv.Public().(ed25519.PublicKey))
		_, err := nc.Subscribe(subject, func(m *nats.Msg) {
			go func() {
				reply := []byte(fmt.Sprintf("%06d", i))
				if crypto {
					body, sig := m.Data[:len(m.Data)-ed25519.SignatureSize], m.Data[len(m.Data)-ed25519.SignatureSize:]
					if !ed25519.Verify(pub, body, sig) {
						panic("bad signature")
					}
					reply = append(reply, ed25519.Sign(hpriv, reply)...)
				}
				m.Respond(reply)
			}()
		})
		check(err)
	}
	for _, c := range cs {
		check(c.Flush())
	}
	client := connect(s.ClientURL())
	defer client.Close()
	var times []time.Duration
	for r := -2; r < rounds; r++ {
		inbox := client.NewInbox()
		ch := make(chan *nats.Msg, n)
		sub, err := client.ChanSubscribe(inbox, ch)
		check(err)
		sub.SetPendingLimits(-1, -1)
		start := time.Now()
		body := []byte(`{"agent":"rpcutil","action":"ping","id":"` + bus.NewID() + `"}`)
		if crypto {
			body = append(body, ed25519.Sign(priv, body)...)
		}
		check(client.PublishRequest(subject, inbox, body))
		if mode == cryptoBothWays {
			// Verify replies on every core, as signet's client does.
			var wg sync.WaitGroup
			var got atomic.Int64
			done := make(chan struct{})
			timeout := time.After(60 * time.Second)
			for range runtime.GOMAXPROCS(0) {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						select {
						case m := <-ch:
							body, sig := m.Data[:6], m.Data[6:]
							idx, err := strconv.Atoi(string(body))
							if err != nil || !ed25519.Verify(hostPubs[idx], body, sig) {
								log.Fatal("bare fan-out: a reply does not verify")
							}
							if got.Add(1) == int64(n) {
								close(done)
							}
						case <-done:
							return
						case <-timeout:
							log.Fatalf("bare fan-out: %d of %d replies", got.Load(), n)
						}
					}
				}()
			}
			wg.Wait()
		} else {
			for got := 0; got < n; got++ {
				select {
				case <-ch:
				case <-time.After(60 * time.Second):
					log.Fatalf("bare fan-out: %d of %d replies", got, n)
				}
			}
		}
		if r >= 0 {
			times = append(times, time.Since(start))
		}
		sub.Unsubscribe()
	}
	return summarize(times)
}

type discard struct{}

func (discard) Audit(*bus.AuditRecord) error { return nil }

// startResponders starts n signet responders (rpcutil only) on shared
// connections and returns their identities and known host keys.
func startResponders(s *server.Server, n, perConn int, authFile, policyFile string, aud bus.Auditor) ([]string, hostKeys, func()) {
	cs := conns(s, n, perConn)
	known := hostKeys{}
	var ids []string
	var rs []*bus.Responder
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("host%05d", i)
		hk := newSigner()
		known[id] = hk.PublicKey()
		host, err := agents.NewHost(agents.HostOptions{Identity: id, Collective: "bench", Facts: map[string]string{"zone": "a"},
			AuthorizedKeys: authFile, Policy: policyFile})
		check(err)
		r, err := bus.NewResponder(bus.ResponderConfig{Conn: cs[i/perConn], Collective: "bench", HostKey: hk, Node: host.Node,
			Trust: host, Handler: host, Audit: aud})
		check(err)
		check(r.Start())
		rs = append(rs, r)
		ids = append(ids, id)
	}
	for _, c := range cs {
		check(c.Flush())
	}
	return ids, known, func() {
		for _, r := range rs {
			r.Shutdown(context.Background())
		}
		closeAll(cs)
	}
}

type hostKeys map[string]ssh.PublicKey

func (h hostKeys) Lookup(id string) (ssh.PublicKey, bool) { k, ok := h[id]; return k, ok }

var profile string

func fanoutSigned(s *server.Server, n, perConn, rounds int, op ssh.Signer, authFile, policyFile string) stats {
	ids, known, stop := startResponders(s, n, perConn, authFile, policyFile, discard{})
	defer stop()
	if profile != "" {
		f, err := os.Create(fmt.Sprintf("%s.%d", profile, n))
		check(err)
		check(pprof.StartCPUProfile(f))
		defer pprof.StopCPUProfile()
	}
	nc := connect(s.ClientURL())
	defer nc.Close()
	c, err := bus.NewClient(bus.ClientConfig{Conn: nc, Collective: "bench", Signer: op, User: "bench", HostKeys: known})
	check(err)
	var times []time.Duration
	for r := -2; r < rounds; r++ {
		start := time.Now()
		out, err := c.Do(context.Background(), bus.Query{Agent: "rpcutil", Action: "ping", Expected: ids, Timeout: time.Minute})
		check(err)
		if ok, _, _ := out.Counts(); ok != n {
			log.Fatalf("signed fan-out: %d of %d ok", ok, n)
		}
		if r >= 0 {
			times = append(times, time.Since(start))
		}
	}
	return summarize(times)
}

func throughputBare(s *server.Server, d time.Duration, inflight int) float64 {
	nc := connect(s.ClientURL())
	defer nc.Close()
	_, err := nc.Subscribe("bare.one", func(m *nats.Msg) { m.Respond([]byte("pong")) })
	check(err)
	client := connect(s.ClientURL())
	defer client.Close()
	return loop(d, inflight, func() error {
		_, err := client.Request("bare.one", []byte("ping"), 10*time.Second)
		return err
	})
}

func throughputSigned(s *server.Server, d time.Duration, inflight int, op ssh.Signer, authFile, policyFile string) float64 {
	f, err := os.CreateTemp("", "signet-bench-audit")
	check(err)
	defer os.Remove(f.Name())
	aud := audit.New(f) // a real audit file: one JSON line per request
	ids, known, stop := startResponders(s, 1, 1, authFile, policyFile, aud)
	defer stop()
	if profile != "" {
		f, err := os.Create(profile + ".throughput")
		check(err)
		check(pprof.StartCPUProfile(f))
		defer pprof.StopCPUProfile()
	}
	nc := connect(s.ClientURL())
	defer nc.Close()
	c, err := bus.NewClient(bus.ClientConfig{Conn: nc, Collective: "bench", Signer: op, User: "bench", HostKeys: known})
	check(err)
	return loop(d, inflight, func() error {
		out, err := c.Do(context.Background(), bus.Query{Agent: "rpcutil", Action: "ping", Targets: ids, Timeout: 10 * time.Second})
		if err == nil && out.Results[0].Status != bus.ResultOK {
			err = fmt.Errorf("%s: %s", out.Results[0].Status, out.Results[0].Error)
		}
		return err
	})
}

func loop(d time.Duration, inflight int, fn func() error) float64 {
	var count atomic.Int64
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	start := time.Now()
	for range inflight {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				check(fn())
				count.Add(1)
			}
		}()
	}
	wg.Wait()
	return float64(count.Load()) / time.Since(start).Seconds()
}

// idleRSS builds and starts a real signetd with the default plugins, lets
// it settle, and reads its resident set size.
func idleRSS(s *server.Server, dir string, op ssh.Signer) (int, error) {
	bin := filepath.Join(dir, "signetd")
	build := exec.Command("go", "build", "-o", bin, "./cmd/signetd")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return 0, fmt.Errorf("build signetd (run from the repository root): %w", err)
	}
	authFile, policyFile := writeTrust(dir, op)
	cfg := filepath.Join(dir, "signetd.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`identity: rss1
collective: bench
nats: {urls: [%q]}
host_key: %s
authorized_keys: %s
policy: %s
audit_log: %s
plugins:
  health: {}
`, s.ClientURL(), filepath.Join(dir, "rss_host_key"), authFile, policyFile, filepath.Join(dir, "audit.jsonl"))), 0o600)
	cmd := exec.Command(bin, "-c", cfg, "--log-format", "json")
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	time.Sleep(10 * time.Second)
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			f := strings.Fields(line)
			return strconv.Atoi(f[1])
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc status")
}

func writeTrust(dir string, op ssh.Signer) (string, string) {
	auth := filepath.Join(dir, "authorized_keys")
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(op.PublicKey())))
	check(os.WriteFile(auth, []byte(`roles="admin",name="bench" `+line+"\n"), 0o600))
	pol := filepath.Join(dir, "policy.yaml")
	check(os.WriteFile(pol, []byte("rules:\n  - roles: [admin]\n    allow: [\"*\"]\nadmin_roles: [admin]\n"), 0o600))
	return auth, pol
}

func newSigner() ssh.Signer {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	check(err)
	s, err := ssh.NewSignerFromKey(priv)
	check(err)
	return s
}

func check(err error) {
	if err != nil {
		log.Fatal(err)
	}
}

func runtimeProcs() int { return runtime.GOMAXPROCS(0) }
