package haproxy

import (
	"bufio"
	"context"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestDialRetriesFullBacklog fills a UNIX socket's listen backlog (as many
// hosts polling one HAProxy admin socket can) and checks that a command
// still gets through once the server accepts again, instead of failing on
// the kernel's EAGAIN.
func TestDialRetriesFullBacklog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "admin.sock")
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrUnix{Name: path}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	ln, err := net.FileListener(os.NewFile(uintptr(fd), path))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	// Fill the backlog until a connect is refused with EAGAIN.
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	full := false
	for i := 0; i < 64 && !full; i++ {
		c, err := net.DialTimeout("unix", path, 100*time.Millisecond)
		if err != nil {
			full = true
			break
		}
		held = append(held, c)
	}
	if !full {
		t.Skip("could not fill the listen backlog on this kernel")
	}
	// Start serving a little later: accept everything, answer commands.
	go func() {
		time.Sleep(150 * time.Millisecond)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func(c net.Conn) {
				defer c.Close()
				if line, err := bufio.NewReader(c).ReadString('\n'); err == nil && line == "show info\n" {
					c.Write([]byte("Name: HAProxy\n"))
				}
			}(c)
		}
	}()
	s := socket{network: "unix", address: path, timeout: 5 * time.Second}
	got, err := s.do(context.Background(), "show info")
	if err != nil {
		t.Fatalf("command failed on a full backlog: %v", err)
	}
	if got != "Name: HAProxy\n" {
		t.Fatalf("answer %q", got)
	}
}
