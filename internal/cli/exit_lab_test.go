package cli

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/signetbus/signet/internal/lab"
)

// TestREADMEExitCodes runs signet against a real two-host lab and checks
// the exit code table of the README: 0 every host succeeded, 1 some host
// failed or did not answer, 2 usage error, 3 no host matched.
func TestREADMEExitCodes(t *testing.T) {
	l, err := lab.Start(context.Background(), lab.Options{Dir: t.TempDir(), Hosts: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Stop()
	env := map[string]string{"SIGNET_CONFIG": l.ClientConfig, "USER": "tester"}
	for _, c := range []struct {
		args []string
		code int
	}{
		{[]string{"ping"}, ExitOK},
		{[]string{"ping", "-I", "web1", "-I", "web9", "-t", "300ms"}, ExitFailed},
		{[]string{"rpc", "rpcutil", "get_fact", "fact=nosuch", "-I", "web1"}, ExitFailed},
		{[]string{"ping", "-t", "soon"}, ExitUsage},
		{[]string{"ping", "-F", "zone=nowhere"}, ExitNoMatch},
	} {
		if code, stderr := runMain(t, env, c.args...); code != c.code {
			t.Errorf("signet %v: exit %d, want %d (stderr %q)", c.args, code, c.code, stderr)
		}
	}
}

// TestInterruptedPingKeepsAnswers: a ping interrupted (Ctrl-C) while a
// host is still silent prints the answers that came in and says it was
// interrupted, instead of printing nothing.
func TestInterruptedPingKeepsAnswers(t *testing.T) {
	l, err := lab.Start(context.Background(), lab.Options{Dir: t.TempDir(), Hosts: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Stop()
	env := map[string]string{"SIGNET_CONFIG": l.ClientConfig, "USER": "tester"}
	// web2 is killed: its registry entry outlives it, so the ping waits
	// for it (a host missing from known_hosts or from the registry would
	// be reported at once, without a wait).
	l.KillHost("web2")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errb bytes.Buffer
	done := make(chan int)
	go func() {
		done <- Main(ctx, []string{"ping", "-I", "web1", "-I", "web2", "-t", "1m"}, IO{In: strings.NewReader(""), Out: &out, Err: &errb, Getenv: envMap(env)})
	}()
	// web2 does not run, so the ping waits for it; web1 answers within
	// milliseconds. Interrupt once the wait is clearly under way.
	time.Sleep(2 * time.Second)
	cancel()
	code := <-done
	if code != ExitFailed {
		t.Errorf("exit %d, want %d", code, ExitFailed)
	}
	if !regexp.MustCompile(`(?m)^web1\s+ok\s`).MatchString(out.String()) {
		t.Errorf("web1's answer is not printed:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "web2") || !strings.Contains(errb.String(), "interrupted before every host answered") {
		t.Errorf("the interruption is not reported:\nstdout %s\nstderr %s", out.String(), errb.String())
	}
}
