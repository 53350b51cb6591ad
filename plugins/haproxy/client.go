package haproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// maxResponse bounds what is read of one answer: "show stat" for a few
// thousand servers is a few megabytes.
const maxResponse = 32 << 20

// socket is one HAProxy runtime API endpoint. It sends one command per
// connection, in HAProxy's non-interactive mode: HAProxy answers and closes
// the connection, so the answer is everything up to EOF.
type socket struct {
	network string // "unix" or "tcp"
	address string
	// timeout bounds each command: dial, write and read together.
	timeout time.Duration
}

// parseSocket reads "unix:/absolute/path" or "tcp:host:port".
func parseSocket(s string) (network, address string, err error) {
	network, address, ok := strings.Cut(s, ":")
	if !ok {
		return "", "", fmt.Errorf("want unix:/path/to/admin.sock or tcp:127.0.0.1:9999, got %q", s)
	}
	if strings.IndexFunc(address, isControl) >= 0 || strings.ContainsAny(address, " ") {
		return "", "", fmt.Errorf("socket address %q contains spaces or control characters", s)
	}
	switch network {
	case "unix":
		if !strings.HasPrefix(address, "/") {
			return "", "", fmt.Errorf("unix socket: want an absolute path such as unix:/run/haproxy/admin.sock, got %q", s)
		}
		return "unix", address, nil
	case "tcp":
		host, port, err := net.SplitHostPort(address)
		if err != nil || host == "" {
			return "", "", fmt.Errorf("tcp socket: want tcp:host:port such as tcp:127.0.0.1:9999, got %q", s)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return "", "", fmt.Errorf("tcp socket: want a port from 1 to 65535, got %q", port)
		}
		return "tcp", address, nil
	}
	return "", "", fmt.Errorf("want a socket starting with unix: or tcp:, got %q", s)
}

// ErrUnsafeCommand is returned for a command that would not be one line of
// one command: the runtime API reads a line, and ';' separates commands.
var ErrUnsafeCommand = errors.New("haproxy: refusing to send a command containing a newline, ';' or a control character")

// do sends one command and returns HAProxy's whole answer.
func (s socket) do(ctx context.Context, cmd string) (string, error) {
	if cmd == "" || strings.ContainsAny(cmd, ";") || strings.IndexFunc(cmd, isControl) >= 0 {
		return "", fmt.Errorf("%w: %q", ErrUnsafeCommand, cmd)
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	conn, err := s.dial(ctx)
	if err != nil {
		return "", fmt.Errorf("connect to runtime API at %s:%s: %w", s.network, s.address, s.ioErr(ctx, err))
	}
	defer conn.Close()
	deadline, _ := ctx.Deadline() // always set: WithTimeout above
	if err := conn.SetDeadline(deadline); err != nil {
		return "", fmt.Errorf("set deadline on %s:%s: %w", s.network, s.address, err)
	}
	// A cancelled context (the request gave up) unblocks I/O at once.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if _, err := io.WriteString(conn, cmd+"\n"); err != nil {
		return "", fmt.Errorf("send %q to %s:%s: %w", cmd, s.network, s.address, s.ioErr(ctx, err))
	}
	b, err := io.ReadAll(io.LimitReader(conn, maxResponse+1))
	if err != nil {
		return "", fmt.Errorf("read answer to %q from %s:%s: %w", cmd, s.network, s.address, s.ioErr(ctx, err))
	}
	if len(b) > maxResponse {
		return "", fmt.Errorf("answer to %q from %s:%s is longer than %d bytes", cmd, s.network, s.address, maxResponse)
	}
	return string(b), nil
}

// dial connects, retrying while a UNIX socket's listen backlog is full
// (EAGAIN): HAProxy serves one runtime API command per connection, and
// many hosts polling one admin socket during a drain can fill the backlog
// for a moment. Other errors fail at once.
func (s socket) dial(ctx context.Context) (net.Conn, error) {
	var d net.Dialer
	wait := 5 * time.Millisecond
	for {
		conn, err := d.DialContext(ctx, s.network, s.address)
		if err == nil || !errors.Is(err, syscall.EAGAIN) {
			return conn, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(wait):
		}
		wait = min(wait*2, 200*time.Millisecond)
	}
}

// ioErr says why i/o stopped: the request's context, or the command's own
// deadline (socket_timeout), rather than a bare "i/o timeout".
func (s socket) ioErr(ctx context.Context, err error) error {
	if errors.Is(err, os.ErrDeadlineExceeded) || ctx.Err() != nil {
		if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.DeadlineExceeded) {
			return fmt.Errorf("%w (%w)", cause, err)
		}
		return fmt.Errorf("no answer within the socket timeout of %v or the request's deadline: %w", s.timeout, err)
	}
	return err
}

// APIError is HAProxy refusing a command: the runtime API answers a
// successful "set" with an empty line and a failed one with a message.
type APIError struct {
	// Instance is the configured name of the HAProxy instance.
	Instance string
	// Command is the command sent.
	Command string
	// Message is HAProxy's answer, such as "No such server.".
	Message string
}

func (e *APIError) Error() string {
	msg := fmt.Sprintf("haproxy instance %s refused %q: %s", e.Instance, e.Command, e.Message)
	if strings.Contains(e.Message, "Permission denied") {
		msg += " (the stats socket needs \"level admin\")"
	}
	return msg
}
