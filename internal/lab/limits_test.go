package lab_test

import (
	"context"
	"strings"
	"syscall"
	"testing"

	"github.com/signetbus/signet/internal/lab"
)

// TestLabHostBounds: the lab goes beyond its old cap of 500 up to
// lab.MaxHosts, and refuses a size the open-file limit cannot hold with a
// message that says what to raise, instead of failing half-way through
// the start with "too many open files".
func TestLabHostBounds(t *testing.T) {
	for _, n := range []int{0, -1, lab.MaxHosts + 1} {
		if err := lab.CheckHosts(n); err == nil {
			t.Errorf("%d hosts accepted", n)
		}
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Skipf("no RLIMIT_NOFILE: %v", err)
	}
	if lim.Cur >= 600*3+256 {
		if err := lab.CheckHosts(600); err != nil {
			t.Errorf("600 hosts refused with %d open files allowed: %v", lim.Cur, err)
		}
	}
	// Lower the soft limit for the rest of the test, as a default
	// `ulimit -n 1024` would: 600 hosts then need more than it allows.
	low := lim
	low.Cur = 1024
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		t.Skipf("cannot lower RLIMIT_NOFILE: %v", err)
	}
	t.Cleanup(func() { syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim) })
	err := lab.CheckHosts(600)
	if err == nil || !strings.Contains(err.Error(), "ulimit -n") {
		t.Fatalf("600 hosts with a limit of 1024 open files: %v", err)
	}
	if _, err := lab.Start(context.Background(), lab.Options{Dir: t.TempDir(), Hosts: 600}); err == nil || !strings.Contains(err.Error(), "open files") {
		t.Fatalf("lab.Start of 600 hosts with 1024 open files: %v", err)
	}
}
