package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"golang.org/x/crypto/ssh"

	"github.com/signetbus/signet/bus"
)

// hostCPUOptions configure the CPU-per-request measurement (-host-cpu).
type hostCPUOptions struct {
	hosts    int           // real signetd processes per fleet
	requests int           // signed pings per round, each to every host
	rounds   int           // measured rounds per binary, alternating
	gap      time.Duration // pause between two pings (the hosts fall asleep)
	// bins are the signetd binaries to compare, each optionally preceded
	// by KEY=VALUE environment words ("GOMAXPROCS=1 /tmp/signetd"); ""
	// builds ./cmd/signetd.
	bins  []string
	extra string // YAML appended to every host's config
	perf  string // with a path: `perf record` one host of each fleet in the first round
}

// cpuFleet is one fleet of real signetd processes of one binary.
type cpuFleet struct {
	label      string
	collective string
	pids       []int
	ids        []string
	c          *bus.Client
	stop       func()
}

// hostCPU starts, for each binary, a fleet of o.hosts real signetd
// processes (own collective each, default config: audit log written and
// shipped to JetStream), and sends o.requests signed pings to every host
// of one fleet, then of the next, for o.rounds rounds. Around each block it
// reads utime+stime of every signetd from /proc/PID/stat and of this
// process (the broker and the client) from getrusage, and prints the CPU
// time per request per host: the work each host does to verify, check,
// authorize, audit (two records, shipped) and answer one request.
func hostCPU(s *server.Server, dir string, op ssh.Signer, o hostCPUOptions) error {
	var fleets []*cpuFleet
	defer func() {
		for _, f := range fleets {
			f.stop()
		}
	}()
	for i, spec := range o.bins {
		words := strings.Fields(spec)
		bin, env := "", words
		if len(words) > 0 && !strings.Contains(words[len(words)-1], "=") {
			bin, env = words[len(words)-1], words[:len(words)-1]
		}
		if bin == "" {
			bin = filepath.Join(dir, "signetd")
			if err := buildSignetd(bin); err != nil {
				return err
			}
		}
		f, err := startCPUFleet(s, dir, op, bin, env, fmt.Sprintf("cpu%d", i), o)
		if err != nil {
			return err
		}
		fleets = append(fleets, f)
	}
	tick := float64(clockTicks())
	fmt.Printf("CPU per request per host: %d real signetd per fleet, %d signed pings to all of them per round, gap %s\n", o.hosts, o.requests, o.gap)
	fmt.Printf("%-5s %-34s %-14s %-16s %-18s %-9s %s\n", "round", "signetd", "µs/req/host", "µs idle/s/host", "bench µs/req/host", "wall ms", "load average")
	for r := -1; r < o.rounds; r++ {
		for _, f := range fleets {
			if r == 0 && o.perf != "" {
				stopPerf := startPerf(f.pids[0], o.perf+"."+f.collective)
				if _, _, err := f.block(o); err != nil {
					return err
				}
				stopPerf()
			}
			// Idle: what the hosts burn with no requests, over 1 s.
			i0 := sumTicks(f.pids)
			time.Sleep(time.Second)
			idle := float64(sumTicks(f.pids)-i0) / tick / float64(len(f.pids)) * 1e6
			h0, b0 := sumTicks(f.pids), selfCPU()
			wall, n, err := f.block(o)
			if err != nil {
				return err
			}
			h1, b1 := sumTicks(f.pids), selfCPU()
			if r < 0 {
				continue // warm-up
			}
			per := float64(h1-h0) / tick / float64(n*len(f.pids)) * 1e6
			bench := (b1 - b0).Seconds() / float64(n*len(f.pids)) * 1e6
			fmt.Printf("%-5d %-34s %-14.1f %-16.0f %-18.1f %-9.0f %s\n", r+1, f.label, per, idle, bench, float64(wall.Milliseconds()), loadAvg())
		}
	}
	return nil
}

// block sends o.requests pings to every host of the fleet, one at a time,
// each after the previous one's replies and o.gap.
func (f *cpuFleet) block(o hostCPUOptions) (time.Duration, int, error) {
	start := time.Now()
	for i := 0; i < o.requests; i++ {
		out, err := f.c.Do(context.Background(), bus.Query{Agent: "rpcutil", Action: "ping", Expected: f.ids, Timeout: 20 * time.Second})
		if err != nil {
			return 0, 0, err
		}
		if ok, _, _ := out.Counts(); ok != len(f.ids) {
			return 0, 0, fmt.Errorf("%s: ping %d: %d of %d ok", f.label, i, ok, len(f.ids))
		}
		if o.gap > 0 {
			time.Sleep(o.gap)
		}
	}
	return time.Since(start) - time.Duration(o.requests)*o.gap, o.requests, nil
}

func buildSignetd(bin string) error {
	if _, err := os.Stat(bin); err == nil {
		return nil
	}
	build := exec.Command("go", "build", "-o", bin, "./cmd/signetd")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("build signetd (run from the repository root): %w", err)
	}
	return nil
}

func startCPUFleet(s *server.Server, dir string, op ssh.Signer, bin string, env []string, collective string, o hostCPUOptions) (*cpuFleet, error) {
	fdir := filepath.Join(dir, collective)
	if err := os.MkdirAll(fdir, 0o700); err != nil {
		return nil, err
	}
	authFile, policyFile := writeTrust(fdir, op)
	f := &cpuFleet{label: strings.Join(append(env, filepath.Base(filepath.Dir(bin))+"/"+filepath.Base(bin)), " "), collective: collective}
	var procs []*exec.Cmd
	f.stop = func() {
		for _, p := range procs {
			p.Process.Signal(syscall.SIGTERM)
		}
		for _, p := range procs {
			p.Wait()
		}
	}
	for i := 0; i < o.hosts; i++ {
		id := fmt.Sprintf("%s-%03d", collective, i)
		cfg := filepath.Join(fdir, id+".yaml")
		if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`identity: %s
collective: %s
nats: {urls: [%q]}
host_key: %s
authorized_keys: %s
policy: %s
audit_log: %s
control_state: %s
%s`, id, collective, s.ClientURL(), filepath.Join(fdir, id+".key"), authFile, policyFile, filepath.Join(fdir, id+".audit"),
			filepath.Join(fdir, id+".control.json"), o.extra)), 0o600); err != nil {
			f.stop()
			return nil, err
		}
		cmd := exec.Command(bin, "-c", cfg, "--log-format", "json")
		cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
		cmd.Env = append(os.Environ(), env...)
		if err := cmd.Start(); err != nil {
			f.stop()
			return nil, err
		}
		procs = append(procs, cmd)
		f.pids = append(f.pids, cmd.Process.Pid)
		f.ids = append(f.ids, id)
	}
	nc := connect(s.ClientURL())
	known, reg, err := waitRegistered(nc, collective, o.hosts)
	if err != nil {
		nc.Close()
		f.stop()
		return nil, err
	}
	_ = reg
	stopProcs := f.stop
	f.stop = func() { nc.Close(); stopProcs() }
	f.c, err = bus.NewClient(bus.ClientConfig{Conn: nc, Collective: collective, Signer: op, User: "bench", HostKeys: known})
	if err != nil {
		f.stop()
		return nil, err
	}
	return f, nil
}

// sumTicks is utime+stime of the processes, in clock ticks.
func sumTicks(pids []int) int64 {
	var sum int64
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		check(err)
		// The command name (field 2) may hold spaces: count from the ")".
		fields := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
		ut, err := strconv.ParseInt(fields[11], 10, 64) // field 14
		check(err)
		st, err := strconv.ParseInt(fields[12], 10, 64) // field 15
		check(err)
		sum += ut + st
	}
	return sum
}

// clockTicks is USER_HZ (100 on Linux, which fixes it for /proc).
func clockTicks() int { return 100 }

// selfCPU is this process's user+system CPU time.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	check(syscall.Getrusage(syscall.RUSAGE_SELF, &ru))
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:3], " ")
}

// startPerf records one process with `perf record -g` until the returned
// function is called; without perf it does nothing.
func startPerf(pid int, out string) func() {
	path, err := exec.LookPath("perf")
	if err != nil {
		fmt.Fprintln(os.Stderr, "perf not found: no perf profile")
		return func() {}
	}
	cmd := exec.Command(path, "record", "-g", "-o", out, "-p", strconv.Itoa(pid))
	cmd.Stdout, cmd.Stderr = io.Discard, os.Stderr
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "perf:", err)
		return func() {}
	}
	time.Sleep(300 * time.Millisecond)
	return func() { cmd.Process.Signal(syscall.SIGINT); cmd.Wait() }
}
