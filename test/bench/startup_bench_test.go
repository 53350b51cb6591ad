package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/signetbus/signet/internal/lab"
)

var (
	startupBefore   = flag.String("startup.before", "", "an older signet binary to measure beside this tree's (BenchmarkStartup)")
	startupPackaged = flag.Bool("startup.packaged", false, "build signet and signetd as the packages do: CGO_ENABLED=0, -trimpath, -ldflags \"-s -w\" (BenchmarkStartup)")
)

// BenchmarkStartup measures the client's fixed cost: whole processes of
// `signet --version` and `signet ping -I web1` (to a three-host in-process
// lab), beside signetd and a Go hello world, all built here. Each
// iteration is one round that runs every command once, in turn, so that
// the machine's load falls on all of them alike. It reports, per command,
// the minimum and median wall time, the median CPU time (user + system, from
// the child's rusage) and the median of minor page faults. With
// -startup.before=PATH an older signet binary runs in the same rounds; with
// -startup.packaged both binaries are built as the .deb and .rpm build
// them (static, stripped):
//
//	go test ./test/bench -run '^$' -bench Startup -benchtime 40x -args -startup.before=/tmp/signet.old
func BenchmarkStartup(b *testing.B) {
	dir := b.TempDir()
	build := func(name, pkg string, env ...string) string {
		bin := filepath.Join(dir, name)
		args := []string{"build", "-o", bin}
		if *startupPackaged {
			args = append(args, "-trimpath", "-ldflags", "-s -w") // as packaging/stage.go
			env = append(env, "CGO_ENABLED=0")
		}
		cmd := exec.Command("go", append(args, pkg)...)
		cmd.Env = append(os.Environ(), env...)
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("build %s: %v\n%s", pkg, err, out)
		}
		return bin
	}
	hello := filepath.Join(dir, "hello")
	os.MkdirAll(hello, 0o755)
	os.WriteFile(filepath.Join(hello, "go.mod"), []byte("module hello\n\ngo 1.22\n"), 0o644)
	os.WriteFile(filepath.Join(hello, "main.go"), []byte("package main\n\nimport \"os\"\n\nfunc main() { os.Stdout.WriteString(\"hello\\n\") }\n"), 0o644)
	helloBin := filepath.Join(dir, "hello.bin")
	cmd := exec.Command("go", "build", "-o", helloBin, ".")
	cmd.Dir = hello
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("build hello: %v\n%s", err, out)
	}
	signet := build("signet", "../../cmd/signet")
	signetd := build("signetd", "../../cmd/signetd")

	l, err := lab.Start(context.Background(), lab.Options{Dir: filepath.Join(dir, "lab"), Hosts: 3})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Stop()
	labEnv := append(os.Environ(), "SIGNET_CONFIG="+l.ClientConfig, "USER=bench")

	type run struct {
		name string
		argv []string
		env  []string
		wall []time.Duration
		cpu  []time.Duration
		flt  []int64
	}
	runs := []*run{
		{name: "hello", argv: []string{helloBin}},
		{name: "signetd-version", argv: []string{signetd, "--version"}},
		{name: "signet-version", argv: []string{signet, "--version"}},
		{name: "signet-ping", argv: []string{signet, "ping", "-I", "web1"}, env: labEnv},
	}
	if *startupBefore != "" {
		runs = append(runs,
			&run{name: "before-version", argv: []string{*startupBefore, "--version"}},
			&run{name: "before-ping", argv: []string{*startupBefore, "ping", "-I", "web1"}, env: labEnv})
	}
	once := func(r *run) {
		c := exec.Command(r.argv[0], r.argv[1:]...)
		c.Env = r.env
		start := time.Now()
		out, err := c.CombinedOutput()
		wall := time.Since(start)
		if err != nil {
			b.Fatalf("%s: %v\n%s", strings.Join(r.argv, " "), err, out)
		}
		ru := c.ProcessState.SysUsage().(*syscall.Rusage)
		r.wall = append(r.wall, wall)
		r.cpu = append(r.cpu, time.Duration(ru.Utime.Nano()+ru.Stime.Nano()))
		r.flt = append(r.flt, ru.Minflt)
	}
	for _, r := range runs { // warm the page cache
		once(r)
		r.wall, r.cpu, r.flt = nil, nil, nil
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for j := range runs {
			once(runs[(i+j)%len(runs)]) // a different order each round
		}
	}
	b.StopTimer()
	ms := func(d time.Duration) float64 { return float64(d) / 1e6 }
	for _, r := range runs {
		slices.Sort(r.wall)
		slices.Sort(r.cpu)
		slices.Sort(r.flt)
		n := len(r.wall)
		b.ReportMetric(ms(r.wall[0]), r.name+"-min-ms")
		b.ReportMetric(ms(r.wall[n/2]), r.name+"-median-ms")
		b.ReportMetric(ms(r.cpu[n/2]), r.name+"-cpu-ms")
		b.ReportMetric(float64(r.flt[n/2]), r.name+"-faults")
		if b.N > 1 { // not for the benchmark's probe run; stdout, as go test cuts benchmark logs at 10 lines
			fmt.Printf("%-16s wall min %.2f ms, median %.2f ms; CPU median %.2f ms; page faults median %d (%d runs)\n",
				r.name, ms(r.wall[0]), ms(r.wall[n/2]), ms(r.cpu[n/2]), r.flt[n/2], n)
		}
	}
	b.ReportMetric(0, "ns/op")
}
