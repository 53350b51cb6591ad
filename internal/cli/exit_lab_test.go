package cli

import (
	"context"
	"testing"

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
