package cli

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/signetbus/signet/internal/lab"
)

// TestRevokeRefreshKeepsBothFresh: on a lab whose policy marks the
// operator's role in fresh_revocation_roles, requests are refused until
// an admin publishes the control documents; `signet revoke --refresh`
// re-signs both the revocation list and the lock set, and the hosts serve
// again.
func TestRevokeRefreshKeepsBothFresh(t *testing.T) {
	l, err := lab.Start(context.Background(), lab.Options{Dir: t.TempDir(), Hosts: 2,
		Policy: "admin_roles: [admin]\nfresh_revocation_roles: [admin]\nrules:\n  - roles: [admin]\n    allow: [\"*\"]\n"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Stop()
	env := map[string]string{"SIGNET_CONFIG": l.ClientConfig, "USER": "operator"}
	var out, errb strings.Builder
	code := Main(context.Background(), []string{"ping"}, IO{In: strings.NewReader(""), Out: &out, Err: &errb, Getenv: envMap(env)})
	if code != ExitFailed || !strings.Contains(out.String(), "no revocation list from the broker") {
		t.Fatalf("ping before any control document: exit %d\n%s%s", code, out.String(), errb.String())
	}
	out.Reset()
	code = Main(context.Background(), []string{"revoke", "--refresh"}, IO{In: strings.NewReader(""), Out: &out, Err: &errb, Getenv: envMap(env)})
	if code != ExitOK || !strings.Contains(out.String(), "revocation list re-signed: seq 1, 0 entries") ||
		!strings.Contains(out.String(), "lock set re-signed: seq 1, 0 locks") {
		t.Fatalf("revoke --refresh: exit %d\n%s%s", code, out.String(), errb.String())
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		out.Reset()
		code = Main(context.Background(), []string{"ping"}, IO{In: strings.NewReader(""), Out: &out, Err: &errb, Getenv: envMap(env)})
		if code == ExitOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("hosts still refuse after the refresh: exit %d\n%s", code, out.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
}
