package command

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// DefaultKillGrace is how long a timed-out program's process group has
// between SIGTERM and SIGKILL unless Spec.KillGrace says otherwise.
const DefaultKillGrace = 5 * time.Second

// Proc is one process of a killed group.
type Proc struct {
	PID int
	// Comm is the process name from /proc, such as "dpkg".
	Comm string
}

// TimeoutError is returned when the context ended before the program: the
// program ran in its own process group, and the whole group was sent
// SIGTERM and, after the grace period, SIGKILL, so no child (dpkg under a
// timed-out apt-get) is left running. It wraps the context's error.
type TimeoutError struct {
	Program string
	// After is how long the program ran.
	After time.Duration
	// PGID is the process group killed (the program's pid).
	PGID int
	// Killed are the group's processes when it was told to stop, the
	// program first; empty when they could not be listed.
	Killed []Proc
	Err    error
}

func (e *TimeoutError) Error() string {
	what := "timed out"
	if errors.Is(e.Err, context.Canceled) {
		what = "cancelled"
	}
	var killed string
	switch n := len(e.Killed); {
	case n == 0:
		killed = fmt.Sprintf("killed process group %d", e.PGID)
	case n == 1:
		killed = fmt.Sprintf("killed process group %d (%s)", e.PGID, e.Killed[0].Comm)
	default:
		var kids []string
		for _, p := range e.Killed[1:] {
			kids = append(kids, fmt.Sprintf("%s[%d]", p.Comm, p.PID))
		}
		noun := "children"
		if n == 2 {
			noun = "child"
		}
		killed = fmt.Sprintf("killed process group %d (%s and %d %s: %s)", e.PGID, e.Killed[0].Comm, n-1, noun, strings.Join(kids, ", "))
	}
	return fmt.Sprintf("%s: %s after %s; %s", e.Program, what, roundDuration(e.After), killed)
}

func (e *TimeoutError) Unwrap() error { return e.Err }

func roundDuration(d time.Duration) time.Duration {
	if d < time.Second {
		return d.Round(100 * time.Millisecond)
	}
	return d.Round(time.Second)
}

// groupMembers lists the processes in process group pgid, the leader
// first, from /proc (Linux). Elsewhere it returns nil.
func groupMembers(pgid int) []Proc {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	var leader, others []Proc
	for _, path := range stats {
		b, err := os.ReadFile(path)
		if err != nil {
			continue // exited meanwhile
		}
		// pid (comm) state ppid pgrp ...; comm may hold spaces and ')'.
		s := string(b)
		open, closing := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || closing < open {
			continue
		}
		f := strings.Fields(s[closing+1:])
		if len(f) < 3 || f[0] == "Z" {
			continue
		}
		pid, err1 := strconv.Atoi(strings.TrimSpace(s[:open]))
		pg, err2 := strconv.Atoi(f[2])
		if err1 != nil || err2 != nil || pg != pgid {
			continue
		}
		p := Proc{PID: pid, Comm: s[open+1 : closing]}
		if pid == pgid {
			leader = append(leader, p)
		} else {
			others = append(others, p)
		}
	}
	return append(leader, others...)
}

// killGroup sends SIGTERM to the group, gives it grace to exit, then
// sends SIGKILL to whatever is left. It returns the members it found
// before the SIGTERM.
func killGroup(pgid int, grace time.Duration) []Proc {
	members := groupMembers(pgid)
	if err := syscall.Kill(-pgid, syscall.SIGTERM); err != nil {
		return members
	}
	end := time.Now().Add(grace)
	for time.Now().Before(end) {
		if len(groupMembers(pgid)) == 0 && syscall.Kill(-pgid, 0) != nil {
			return members
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	return members
}
