package keys

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

const (
	keyA   = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIN9jvkcQns0EfAGLLKwkmPNqEhplYhViOngNb4zpFwuK"
	keyB   = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJo4Z2k941+Dv3y4/0OnH0WmT3B3c47Z18wte8/G+nB9"
	keyRSA = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQC7Qm/WcEjnlHmeUJ+nJ8ySVAsjp6pCR/lf2m5anuw4NjH9Jf7F3gxaK2bek7teAWqUyf+bT4FLJztnkMa/b4U+eW10RAUQd9yBijbNSSm00jLA/s4+FYERe6izjPtvLorrnyWpeC8lYN8lD1dvL7zXtAW6JhYBC/TRYh1MRXXmGw=="
)

// skKeyLine returns an sk-ssh-ed25519@openssh.com public key line, as a
// FIDO key's id_ed25519_sk.pub holds.
func skKeyLine() string {
	wire := ssh.Marshal(struct{ Type, Key, App string }{ssh.KeyAlgoSKED25519, string(make([]byte, ed25519.PublicKeySize)), "ssh:"})
	return ssh.KeyAlgoSKED25519 + " " + base64.StdEncoding.EncodeToString(wire)
}

func fp(t testing.TB, line string) string {
	t.Helper()
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	return Fingerprint(pub)
}

func TestParseAuthorizedKeys(t *testing.T) {
	type want struct {
		Name  string
		Roles []string
		Line  int
		Key   string
	}
	cases := []struct {
		name string
		in   string
		want []want
	}{
		{
			name: "name from option",
			in:   `roles="admin,deploy",name="alice" ` + keyA + " alice@laptop\n",
			want: []want{{"alice", []string{"admin", "deploy"}, 1, keyA}},
		},
		{
			name: "name from comment, comments and blank lines",
			in:   "# operators\n\n  \t\nroles=\"ci\" " + keyA + " ci-runner\n# end\n",
			want: []want{{"ci-runner", []string{"ci"}, 4, keyA}},
		},
		{
			name: "options in either order, spaces in role list",
			in:   `name="bob",roles="ops, deploy" ` + keyB + "\n",
			want: []want{{"bob", []string{"ops", "deploy"}, 1, keyB}},
		},
		{
			name: "one name, two keys",
			in:   `roles="ops" ` + keyA + " alice\n" + `roles="ops" ` + keyB + " alice\n",
			want: []want{{"alice", []string{"ops"}, 1, keyA}, {"alice", []string{"ops"}, 2, keyB}},
		},
		{
			name: "sk-ed25519 key",
			in:   `roles="admin" ` + skKeyLine() + " alice@yubikey\n",
			want: []want{{"alice@yubikey", []string{"admin"}, 1, skKeyLine()}},
		},
		{name: "empty file", in: "", want: nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseAuthorizedKeys(strings.NewReader(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %d keys, want %d", len(got), len(tc.want))
			}
			for i, w := range tc.want {
				g := got[i]
				if g.Name != w.Name || !reflect.DeepEqual(g.Roles, w.Roles) || g.Line != w.Line {
					t.Errorf("key %d: got name %q roles %v line %d, want %q %v %d", i, g.Name, g.Roles, g.Line, w.Name, w.Roles, w.Line)
				}
				if g.Fingerprint != fp(t, w.Key) || g.Fingerprint != Fingerprint(g.Key) {
					t.Errorf("key %d: fingerprint %s, want %s", i, g.Fingerprint, fp(t, w.Key))
				}
				if g.KeyBlob != string(g.Key.Marshal()) {
					t.Errorf("key %d: KeyBlob is not the key's wire form", i)
				}
			}
		})
	}
}

func TestParseAuthorizedKeysRejects(t *testing.T) {
	cases := []struct {
		name    string
		in      string
		line    int
		wantErr string
	}{
		{"no roles", keyA + " alice\n", 1, "no roles="},
		{"empty roles", `roles="" ` + keyA + " alice\n", 1, "empty"},
		{"bad role", `roles="ad min" ` + keyA + " alice\n", 1, `role "ad min"`},
		{"role with shell chars", `roles="ops;rm" ` + keyA + " alice\n", 1, "role"},
		{"empty role in list", `roles="ops,,ci" ` + keyA + " alice\n", 1, `role ""`},
		{"duplicate role", `roles="ops,ops" ` + keyA + " alice\n", 1, "twice"},
		{"roles given twice", `roles="ops",roles="ci" ` + keyA + " alice\n", 1, "roles= given twice"},
		{"unknown option", `roles="ops",command="/bin/sh" ` + keyA + " alice\n", 1, `unknown option "command"`},
		{"flag option", `roles="ops",no-pty ` + keyA + " alice\n", 1, `unknown option "no-pty"`},
		{"unquoted value", `roles=ops ` + keyA + " alice\n", 1, "quoted"},
		{"no name, no comment", `roles="ops" ` + keyA + "\n", 1, "neither name="},
		{"comment unusable as name", `roles="ops" ` + keyA + " Alice Smith\n", 1, "not usable as a name"},
		{"bad name", `roles="ops",name="-alice" ` + keyA + "\n", 1, "name="},
		{"rsa key", `roles="ops" ` + keyRSA + " r\n", 1, "ssh-rsa"},
		{"not a key", "# hi\nroles=\"ops\" ssh-ed25519 AAAAnotbase64 alice\n", 2, "not an authorized key line"},
		{"duplicate key", `roles="ops" ` + keyA + " a\n\n" + `roles="ci" ` + keyA + " b\n", 3, "already listed on line 1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseAuthorizedKeys(strings.NewReader(tc.in))
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("got %v, want a *ParseError", err)
			}
			if pe.Line != tc.line {
				t.Errorf("error on line %d, want %d: %v", pe.Line, tc.line, err)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %q does not mention %q", err, tc.wantErr)
			}
		})
	}
}

func TestLoadAuthorizedKeysNamesFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "authorized_keys")
	os.WriteFile(path, []byte("\n"+keyA+" alice\n"), 0o644)
	_, err := LoadAuthorizedKeys(path)
	if err == nil || !strings.HasPrefix(err.Error(), path+":2: ") {
		t.Fatalf("got %v, want an error starting with %s:2:", err, path)
	}
	os.WriteFile(path, []byte(`roles="ops" `+keyA+" alice\n"), 0o644)
	got, err := LoadAuthorizedKeys(path)
	if err != nil || len(got) != 1 || got[0].Name != "alice" {
		t.Fatalf("got %+v, %v", got, err)
	}
}

func TestKnownHosts(t *testing.T) {
	pubA, _, _, _, _ := ssh.ParseAuthorizedKey([]byte(keyA))
	pubB, _, _, _, _ := ssh.ParseAuthorizedKey([]byte(keyB))
	in := "# pinned responders\n" +
		FormatKnownHost("web1.example.com", pubA) +
		"\n" +
		"db-1\t" + keyB + " added by alice\n"
	k, err := ParseKnownHosts(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if k.Len() != 2 {
		t.Fatalf("Len %d, want 2", k.Len())
	}
	for id, want := range map[string]ssh.PublicKey{"web1.example.com": pubA, "db-1": pubB} {
		got, ok := k.Lookup(id)
		if !ok || Fingerprint(got) != Fingerprint(want) {
			t.Errorf("Lookup(%s) = %v, %v", id, got, ok)
		}
	}
	if _, ok := k.Lookup("web2.example.com"); ok {
		t.Error("unknown identity found")
	}
	if line := FormatKnownHost("h", pubA); line != "h "+keyA+"\n" {
		t.Errorf("FormatKnownHost = %q", line)
	}
	var nilHosts *KnownHosts
	if _, ok := nilHosts.Lookup("x"); ok || nilHosts.Len() != 0 {
		t.Error("nil KnownHosts is not empty")
	}
}

func TestParseKnownHostsRejects(t *testing.T) {
	cases := []struct {
		name    string
		in      string
		line    int
		wantErr string
	}{
		{"key only", keyA + "\n", 1, "starts with key type"},
		{"identity only", "web1\n", 1, "want IDENTITY"},
		{"bad key", "web1 ssh-ed25519 AAAA\n", 1, "bad host key"},
		{"identity and type only", "web1 ssh-ed25519\n", 1, "want a key type and base64"},
		{"bad identity", "-web1 " + keyA + "\n", 1, "identity"},
		{"shell chars in identity", "web1;id " + keyA + "\n", 1, "identity"},
		{"wildcard identity", "*.example.com " + keyA + "\n", 1, "identity"},
		{"type mismatch", "web1 ssh-rsa " + strings.Fields(keyA)[1] + "\n", 1, "does not match"},
		{"not base64", "web1 ssh-ed25519 !!!\n", 1, "base64"},
		{"rsa host key", "web1 " + keyRSA + "\n", 1, "ssh-rsa"},
		{"duplicate identity", "web1 " + keyA + "\n#\nweb1 " + keyB + "\n", 3, "already listed on line 1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseKnownHosts(strings.NewReader(tc.in))
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("got %v, want a *ParseError", err)
			}
			if pe.Line != tc.line || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("got line %d %q, want line %d mentioning %q", pe.Line, err, tc.line, tc.wantErr)
			}
		})
	}
}

func TestLoadKnownHostsNamesFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "known_hosts")
	os.WriteFile(path, []byte("web1\n"), 0o644)
	if _, err := LoadKnownHosts(path); err == nil || !strings.HasPrefix(err.Error(), path+":1: ") {
		t.Fatalf("got %v, want an error starting with %s:1:", err, path)
	}
	if _, err := LoadKnownHosts(filepath.Join(t.TempDir(), "absent")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("got %v, want ErrNotExist", err)
	}
}
