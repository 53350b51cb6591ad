package stage

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/signetbus/signet/internal/command"
)

// daemon is a long-running program the stage started (haproxy,
// alertmanager, runsvdir) in its own process group, so that Stop can end it
// with everything it started. internal/command runs programs to
// completion; daemons are the one thing it cannot run, so they are started
// here the same way: an argument vector, command.DefaultEnv, no shell.
type daemon struct {
	name string
	cmd  *exec.Cmd
	log  *os.File
	done chan struct{}
	err  error
	// stopSig is sent to the process (not the group) first; runsvdir
	// stops its services on SIGHUP. The whole group is killed after.
	stopSig syscall.Signal
}

// startDaemon starts argv with its output in logPath.
func startDaemon(name string, argv []string, logPath string, stopSig syscall.Signal) (*daemon, error) {
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append([]string(nil), command.DefaultEnv...)
	cmd.Dir = "/"
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	d := &daemon{name: name, cmd: cmd, log: lf, done: make(chan struct{}), stopSig: stopSig}
	go func() {
		d.err = cmd.Wait()
		close(d.done)
	}()
	return d, nil
}

// exited reports whether the daemon has exited, and how.
func (d *daemon) exited() (bool, error) {
	select {
	case <-d.done:
		return true, d.err
	default:
		return false, nil
	}
}

// stop sends stopSig, waits up to grace for the process to exit, then
// kills its whole process group (children included) and waits.
func (d *daemon) stop(grace time.Duration) error {
	pid := d.cmd.Process.Pid
	if exited, _ := d.exited(); !exited {
		_ = d.cmd.Process.Signal(d.stopSig)
		select {
		case <-d.done:
		case <-time.After(grace):
		}
	}
	// The group may outlive its leader (runsv and the apps under runsvdir).
	if err := syscall.Kill(-pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("stop %s: kill process group %d: %w", d.name, pid, err)
	}
	select {
	case <-d.done:
	case <-time.After(5 * time.Second):
		return fmt.Errorf("stop %s: process %d did not exit after SIGKILL", d.name, pid)
	}
	d.log.Close()
	return nil
}
