package lab

import (
	"fmt"
	"syscall"
)

// MaxHosts is the largest lab. Each in-process responder costs about
// 150-200 kB of memory, broker side included (docs/performance.md), and
// three file descriptors: its broker connection, the broker's side of it,
// and its audit log. The descriptors are usually the limit.
const MaxHosts = 10000

// fdsPerHost and fdsSpare size the descriptor check in CheckHosts.
const (
	fdsPerHost = 3
	fdsSpare   = 256
)

// CheckHosts says whether a lab of n hosts can start in this process:
// between 1 and MaxHosts, and within the open-file limit (Go raises the
// soft limit to the hard one at start-up, so the hard limit is what
// counts).
func CheckHosts(n int) error {
	if n < 1 || n > MaxHosts {
		return fmt.Errorf("lab: %d hosts: want between 1 and %d", n, MaxHosts)
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return nil // cannot tell; let the start fail if it must
	}
	if need := uint64(n*fdsPerHost + fdsSpare); need > lim.Cur {
		return fmt.Errorf("lab: %d hosts need about %d open files but the limit is %d: raise it (ulimit -n %d, or LimitNOFILE= in a unit) or use at most %d hosts",
			n, need, lim.Cur, need, (int(lim.Cur)-fdsSpare)/fdsPerHost)
	}
	return nil
}
