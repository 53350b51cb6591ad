package lab_test

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/signetbus/signet/internal/cli"
	"github.com/signetbus/signet/internal/lab"
)

func signet(t *testing.T, l *lab.Lab, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	env := map[string]string{"SIGNET_CONFIG": l.ClientConfig, "USER": "tester"}
	code := cli.Main(context.Background(), args, cli.IO{In: strings.NewReader(""), Out: &out, Err: &errb, Getenv: func(k string) string { return env[k] }})
	return code, out.String(), errb.String()
}

func TestLabServesSignedRequests(t *testing.T) {
	l, err := lab.Start(context.Background(), lab.Options{Dir: t.TempDir(), Hosts: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Stop()
	code, out, errs := signet(t, l, "ping")
	if code != 0 || strings.Count(out, "\tok\t") != 4 {
		t.Fatalf("ping: exit %d\n%s%s", code, out, errs)
	}
	code, out, _ = signet(t, l, "discover", "-F", "zone=a")
	if code != 0 || out != "web1\nweb4\n" {
		t.Fatalf("discover zone=a: exit %d %q", code, out)
	}
	// A stopped responder leaves the registry, and a direct request to it
	// reports it by name.
	l.StopHost("web2")
	code, out, _ = signet(t, l, "ping", "-I", "web2", "-t", "300ms")
	if code != 1 || !strings.Contains(out, "web2\tno response") {
		t.Fatalf("stopped host: exit %d %q", code, out)
	}
	if err := l.StartHost("web2"); err != nil {
		t.Fatal(err)
	}
	code, out, _ = signet(t, l, "ping", "-I", "web2", "-t", "5s")
	if code != 0 {
		t.Fatalf("restarted host: exit %d %q", code, out)
	}
}
