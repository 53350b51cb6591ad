package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/signetbus/signet/internal/lab"
)

// signet rpc with a missing action shows the usage and the agent's
// actions from the plugins this signet was built with.
func TestRPCMissingActionShowsActions(t *testing.T) {
	code, stderr := runMain(t, map[string]string{"SIGNET_CONFIG": "/nonexistent"}, "rpc", "package")
	if code != ExitUsage {
		t.Errorf("exit %d, want %d", code, ExitUsage)
	}
	for _, want := range []string{"rpc package: missing the action", "usage: signet rpc AGENT ACTION [input=value...]",
		"actions of package: check_version, install, refresh, remove, status, update", "signet describe package"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	if strings.Contains(stderr, "accepts") {
		t.Errorf("cobra's arity message leaks:\n%s", stderr)
	}
	code, stderr = runMain(t, nil, "rpc")
	if code != ExitUsage || !strings.Contains(stderr, "missing the agent and the action") || !strings.Contains(stderr, "agents built in: ") {
		t.Errorf("rpc alone: exit %d, stderr:\n%s", code, stderr)
	}
}

// On a real lab: an agent no host offers is said as such with the nearest
// name, and -I takes a glob.
func TestRPCUnknownAgentAndIdentityGlob(t *testing.T) {
	l, err := lab.Start(context.Background(), lab.Options{Dir: t.TempDir(), Hosts: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Stop()
	env := map[string]string{"SIGNET_CONFIG": l.ClientConfig, "USER": "tester"}

	code, stderr := runMain(t, env, "rpc", "pakage", "status")
	if code != ExitNoMatch || !strings.Contains(stderr, `no host offers agent "pakage"`) || !strings.Contains(stderr, `did you mean "package"?`) {
		t.Errorf("rpc pakage status: exit %d, stderr:\n%s", code, stderr)
	}
	code, stderr = runMain(t, env, "describe", "servce")
	if code != ExitNoMatch || !strings.Contains(stderr, `no host offers agent "servce"; did you mean "service"?`) {
		t.Errorf("describe servce: exit %d, stderr:\n%s", code, stderr)
	}
	code, stderr = runMain(t, env, "rpc", "rpcutil", "ping", "-F", "zone=nowhere")
	if code != ExitNoMatch || !strings.Contains(stderr, "2 hosts offer agent \"rpcutil\" but none matches the filter") {
		t.Errorf("filter matching nothing: exit %d, stderr:\n%s", code, stderr)
	}

	var out, errb bytes.Buffer
	code = Main(context.Background(), []string{"ping", "-I", "web*"}, IO{In: strings.NewReader(""), Out: &out, Err: &errb, Getenv: envMap(env)})
	if code != ExitOK || !strings.Contains(out.String(), "web1") || !strings.Contains(out.String(), "web2") {
		t.Errorf("ping -I 'web*': exit %d\nstdout %s\nstderr %s", code, out.String(), errb.String())
	}
	code, stderr = runMain(t, env, "ping", "-I", "web 1")
	if code != ExitUsage || !strings.Contains(stderr, "-I takes a host name, a glob such as 'web*' or a /regex/") {
		t.Errorf("ping -I 'web 1': exit %d, stderr:\n%s", code, stderr)
	}
}
