package command

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestRunTimeoutKillsProcessGroup: a timed-out program's children die
// with it (a timed-out apt-get must not leave dpkg running), and the
// error says what was killed.
func TestRunTimeoutKillsProcessGroup(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "forker.sh")
	pidFile := filepath.Join(dir, "grandchild.pid")
	// The grandchild ignores nothing: SIGTERM to the group ends it. A
	// second one traps SIGTERM, so only the SIGKILL that follows ends it.
	body := "#!/bin/sh\nsleep 300 &\necho $! > \"$1\"\nsh -c 'trap \"\" TERM; echo $$ >> \"$1\"; exec sleep 300' sh \"$1\" &\nwait\n"
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	_, err := Run(ctx, Spec{Argv: []string{"/bin/sh", script, pidFile}, KillGrace: 200 * time.Millisecond})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want a deadline error", err)
	}
	var te *TimeoutError
	if !errors.As(err, &te) {
		t.Fatalf("got %T %v, want a *TimeoutError", err, err)
	}
	want := regexp.MustCompile(`^/bin/sh: timed out after [0-9.]+m?s; killed process group [0-9]+ \(sh and 2 children: sleep\[[0-9]+\], sleep\[[0-9]+\]\)$`)
	if !want.MatchString(err.Error()) {
		t.Errorf("error %q: want it to match %s", err, want)
	}
	b, rerr := os.ReadFile(pidFile)
	if rerr != nil {
		t.Fatal(rerr)
	}
	pids := strings.Fields(string(b))
	if len(pids) != 2 {
		t.Fatalf("pid file holds %q, want two grandchildren", b)
	}
	for _, p := range pids {
		pid, _ := strconv.Atoi(p)
		if !gone(pid, 10*time.Second) {
			t.Errorf("grandchild %d is still running after the timeout", pid)
		}
	}
}

// gone waits up to d for pid to exit (a zombie no one reaps counts as
// gone: it runs nothing).
func gone(pid int, d time.Duration) bool {
	for end := time.Now().Add(d); ; {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			return true
		}
		if i := strings.LastIndexByte(string(b), ')'); i > 0 && strings.HasPrefix(string(b[i+1:]), " Z") {
			return true
		}
		if time.Now().After(end) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}
