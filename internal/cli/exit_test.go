package cli

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/signetbus/signet/bus"
)

// runMain runs signet in-process with env and returns the exit code and stderr.
func runMain(t *testing.T, env map[string]string, args ...string) (int, string) {
	t.Helper()
	var out, errb bytes.Buffer
	io := IO{In: strings.NewReader(""), Out: &out, Err: &errb, Getenv: envMap(env)}
	return Main(context.Background(), args, io), errb.String()
}

// TestExitCodeAgentFailureIsNotUsage: an ssh-agent failure whose text
// happens to contain "invalid argument" (a socket path too long for
// sun_path, which the kernel reports as EINVAL) is a failure to run, exit
// 1, not a usage error.
func TestExitCodeAgentFailureIsNotUsage(t *testing.T) {
	dir := t.TempDir()
	long := filepath.Join(dir, strings.Repeat("s", 200), "agent.sock")
	env := map[string]string{"SIGNET_CONFIG": filepath.Join(dir, "none.yaml"), "SIGNET_KEY": "agent", "SSH_AUTH_SOCK": long}
	os.WriteFile(env["SIGNET_CONFIG"], []byte("collective: lab\n"), 0o600)
	code, stderr := runMain(t, env, "ping")
	if !strings.Contains(stderr, "ssh-agent") {
		t.Fatalf("stderr %q does not name the ssh-agent failure", stderr)
	}
	if code != ExitFailed {
		t.Fatalf("ssh-agent failure %q exited %d, want %d", stderr, code, ExitFailed)
	}
}

// TestExitCodeAgentGarbage: an agent socket that answers garbage fails the
// run (exit 1).
func TestExitCodeAgentGarbage(t *testing.T) {
	dir, err := os.MkdirTemp("", "agent")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "s")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("\x00\x00\x00\x05invalid argument garbage"))
			c.Close()
		}
	}()
	cfg := filepath.Join(dir, "client.yaml")
	os.WriteFile(cfg, []byte("collective: lab\n"), 0o600)
	code, stderr := runMain(t, map[string]string{"SIGNET_CONFIG": cfg, "SIGNET_KEY": "agent", "SSH_AUTH_SOCK": sock}, "ping")
	if code != ExitFailed || !strings.Contains(stderr, "ssh-agent") {
		t.Fatalf("garbage agent: code %d stderr %q, want %d", code, stderr, ExitFailed)
	}
}

// TestExitCodeByKind: the code comes from the kind of error, never from its
// text.
func TestExitCodeByKind(t *testing.T) {
	einval := &net.OpError{Op: "dial", Net: "unix", Err: os.NewSyscallError("connect", syscall.EINVAL)}
	cases := []struct {
		name string
		err  error
		code int
	}{
		{"syscall EINVAL", fmt.Errorf("ssh-agent: %w", einval), ExitFailed},
		{"text that looks like cobra's", fmt.Errorf("remote said: unknown flag --x, requires at least 1 arg, accepts 2 arg(s)"), ExitFailed},
		{"usage", usageErrorf("bad --output"), ExitUsage},
		{"wrapped usage", fmt.Errorf("deploy: %w", usageErrorf("bad --output")), ExitUsage},
		{"no match", fmt.Errorf("ping: %w", bus.ErrNoMatch), ExitNoMatch},
		{"partial failure", &partialFailure{}, ExitFailed},
	}
	for _, c := range cases {
		var buf bytes.Buffer
		if got := exitCode(c.err, &buf, "signet"); got != c.code {
			t.Errorf("%s (%v): exit %d, want %d", c.name, c.err, got, c.code)
		}
	}
}

// TestMainUsageExitCodes: every way to call signet wrongly exits 2, and
// the errors are usage errors at their source (cobra's flag and argument
// validation), not recognised by text.
func TestMainUsageExitCodes(t *testing.T) {
	for _, args := range [][]string{
		{"pingg"},                     // unknown command
		{"ping", "--nope"},            // unknown flag
		{"ping", "-Z"},                // unknown shorthand
		{"ping", "--timeout"},         // flag needs an argument
		{"ping", "--timeout", "soon"}, // invalid argument
		{"ping", "extra"},             // NoArgs
		{"rpc", "onlyagent"},          // MinimumNArgs
		{"rpc", "Bad-Agent", "x"},     // name grammar
		{"describe"},                  // ExactArgs
		{"describe", "a", "b"},        // ExactArgs
		{"deploy", "app"},             // custom Args
		{"deploy", "app", "1.0", "--output", "xml"},
		{"--env", "x", "workflow", "nope", "f"},
		{"completion", "bash", "extra"}, // cobra's own command
	} {
		code, stderr := runMain(t, map[string]string{"SIGNET_CONFIG": filepath.Join(t.TempDir(), "none")}, args...)
		if code != ExitUsage {
			t.Errorf("signet %s: exit %d (stderr %q), want %d", strings.Join(args, " "), code, stderr, ExitUsage)
		}
	}
	if _, stderr := runMain(t, nil, "pnig"); !strings.Contains(stderr, `unknown command "pnig" for "signet" (did you mean ping?)`) {
		t.Errorf("unknown command: stderr %q", stderr)
	}
	var out, errb bytes.Buffer
	io := IO{In: strings.NewReader(""), Out: &out, Err: &errb, Getenv: envMap(nil)}
	for _, args := range [][]string{{"extra"}, {"--nope"}, {"--log-level"}} {
		errb.Reset()
		if code := DaemonMain(context.Background(), args, io); code != ExitUsage {
			t.Errorf("signetd %s: exit %d (stderr %q), want %d", strings.Join(args, " "), code, errb.String(), ExitUsage)
		}
	}
}

// TestMainHelpExitsZero: asking for help is not an error.
func TestMainHelpExitsZero(t *testing.T) {
	for _, args := range [][]string{{}, {"--help"}, {"ping", "--help"}, {"help", "ping"}, {"completion", "bash"}} {
		if code, stderr := runMain(t, nil, args...); code != ExitOK {
			t.Errorf("signet %s: exit %d (stderr %q)", strings.Join(args, " "), code, stderr)
		}
	}
}

// TestClientConfigErrorsAreUsage: a wrong config file is a usage error
// (exit 2), as the exit code table says, whatever the YAML library's
// message looks like; an unreadable one that exists is a failure to run.
func TestClientConfigErrorsAreUsage(t *testing.T) {
	dir := t.TempDir()
	typo := filepath.Join(dir, "typo.yaml")
	os.WriteFile(typo, []byte("colective: typo\n"), 0o600)
	broken := filepath.Join(dir, "broken.yaml")
	os.WriteFile(broken, []byte("timeout: [\n"), 0o600)
	badDur := filepath.Join(dir, "dur.yaml")
	os.WriteFile(badDur, []byte("timeout: soon\n"), 0o600)
	for _, args := range [][]string{
		{"--config", typo, "ping"},
		{"--config", broken, "ping"},
		{"--config", badDur, "ping"},
		{"--config", filepath.Join(dir, "missing.yaml"), "ping"},
	} {
		if code, stderr := runMain(t, nil, args...); code != ExitUsage {
			t.Errorf("signet %s: exit %d (stderr %q), want %d", strings.Join(args, " "), code, stderr, ExitUsage)
		}
	}
	if os.Geteuid() != 0 { // root reads anything
		unreadable := filepath.Join(dir, "unreadable.yaml")
		os.WriteFile(unreadable, []byte("collective: x\n"), 0o000)
		if code, _ := runMain(t, nil, "--config", unreadable, "ping"); code != ExitFailed {
			t.Errorf("unreadable config: exit %d, want %d", code, ExitFailed)
		}
	}
}
