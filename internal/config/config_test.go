package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nkeys"
)

// TestNATSCheck: start-up and --check refuse a seed others can read, a
// file that is not a user seed, and an inbox prefix with wildcards; a
// good seed gives the connection the inbox prefix of its key.
func TestNATSCheck(t *testing.T) {
	dir := t.TempDir()
	kp, _ := nkeys.CreateUser()
	seed, _ := kp.Seed()
	pub, _ := kp.PublicKey()
	good := filepath.Join(dir, "good.nk")
	os.WriteFile(good, seed, 0o600)
	loose := filepath.Join(dir, "loose.nk")
	os.WriteFile(loose, seed, 0o644)
	os.Chmod(loose, 0o644)
	junk := filepath.Join(dir, "junk.nk")
	os.WriteFile(junk, []byte("not a seed"), 0o600)
	for _, tc := range []struct {
		c    NATS
		want string
	}{
		{NATS{NKeyFile: good}, ""},
		{NATS{NKeyFile: good, InboxPrefix: "_INBOX.ops"}, ""},
		{NATS{NKeyFile: loose}, "chmod 600"},
		{NATS{NKeyFile: junk}, "not a user nkey seed"},
		{NATS{NKeyFile: filepath.Join(dir, "missing")}, "no such file"},
		{NATS{InboxPrefix: "_INBOX.>"}, "without wildcards"},
		{NATS{InboxPrefix: "_INBOX.*.x"}, "without wildcards"},
		{NATS{InboxPrefix: "_INBOX..x"}, "without wildcards"},
	} {
		err := tc.c.Check()
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%+v: %v, want %q", tc.c, err, tc.want)
		}
		if _, aerr := tc.c.AuthOptions(); (aerr == nil) != (err == nil) {
			t.Errorf("%+v: AuthOptions %v, Check %v: start-up and --check disagree", tc.c, aerr, err)
		}
	}
	if InboxPrefix(pub) != "_INBOX."+pub {
		t.Fatalf("inbox prefix %s", InboxPrefix(pub))
	}
}
