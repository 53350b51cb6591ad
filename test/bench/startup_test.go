package main

import (
	"bufio"
	"bytes"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// Bounds on what package initialisation may allocate in the signet and
// signetd binaries, as GODEBUG=inittrace=1 reports it. They guard the
// client's fixed cost: every `signet` command pays for every init of every
// package the binary links (the plugins, the workflows, the embedded
// broker), so an init must not compile long regexps, build tables or
// register heavy state. Compile a regexp on first use (sync.OnceValue) or
// check with a plain loop instead. Allocations, not wall clock, so that a
// loaded machine cannot fail the test.
const (
	// maxOwnInitBytes bounds one signet package's init.
	maxOwnInitBytes = 16 << 10
	// maxTotalInitBytes bounds all inits together, dependencies included
	// (the embedded nats-server's own init is about 180 kB).
	maxTotalInitBytes = 512 << 10
)

// notInSignet are packages whose inits the operator CLI must not run: every
// signet command would pay them. client_golang's (with procfs) allocate
// about 266 kB in 2.2 ms of init clock (docs/performance.md); signetd links
// it for its metrics, signet does not.
var notInSignet = []string{"github.com/prometheus/client_golang/", "github.com/prometheus/procfs"}

func TestStartupInitIsLight(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binaries")
	}
	dir := t.TempDir()
	for _, cmd := range []string{"signet", "signetd"} {
		t.Run(cmd, func(t *testing.T) {
			bin := filepath.Join(dir, cmd)
			build := exec.Command("go", "build", "-o", bin, "../../cmd/"+cmd)
			if out, err := build.CombinedOutput(); err != nil {
				t.Fatalf("build %s: %v\n%s", cmd, err, out)
			}
			run := exec.Command(bin, "--version")
			run.Env = append(run.Environ(), "GODEBUG=inittrace=1")
			var stderr bytes.Buffer
			run.Stderr = &stderr
			if err := run.Run(); err != nil {
				t.Fatalf("%s --version: %v\n%s", cmd, err, stderr.String())
			}
			total, inits := 0, 0
			sc := bufio.NewScanner(&stderr)
			for sc.Scan() {
				pkg, bytes, ok := parseInitTrace(sc.Text())
				if !ok {
					continue
				}
				inits++
				total += bytes
				for _, p := range notInSignet {
					if cmd == "signet" && strings.HasPrefix(pkg, p) {
						t.Errorf("signet runs the init of %s: keep the Prometheus client out of the operator CLI", pkg)
					}
				}
				if strings.HasPrefix(pkg, "github.com/signetbus/signet") && bytes > maxOwnInitBytes {
					t.Errorf("init of %s allocates %d bytes (bound %d): make it lazy", pkg, bytes, maxOwnInitBytes)
				}
			}
			if inits == 0 {
				t.Fatalf("no inittrace lines from %s:\n%s", cmd, stderr.String())
			}
			if total > maxTotalInitBytes {
				t.Errorf("package inits of %s allocate %d bytes in all (bound %d)", cmd, total, maxTotalInitBytes)
			}
			t.Logf("%s: %d package inits, %d bytes", cmd, inits, total)
		})
	}
}

// parseInitTrace reads one line of GODEBUG=inittrace=1 output:
//
//	init github.com/x/y @1.2 ms, 0.3 ms clock, 4096 bytes, 12 allocs
func parseInitTrace(line string) (pkg string, bytes int, ok bool) {
	f := strings.Fields(line)
	if len(f) < 11 || f[0] != "init" || f[8] != "bytes," {
		return "", 0, false
	}
	n, err := strconv.Atoi(f[7])
	if err != nil {
		return "", 0, false
	}
	return f[1], n, true
}
