package keys

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// testKey is a private key both as an in-memory key and as a file ssh-add
// can read.
type testKey struct {
	priv any
	pub  ssh.PublicKey
	path string
}

func newTestKey(t testing.TB, dir, kind, comment string) testKey {
	t.Helper()
	var priv any
	var err error
	switch kind {
	case "ed25519":
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	case "rsa":
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	case "ecdsa":
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, comment)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, comment)
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	return testKey{priv: priv, pub: signer.PublicKey(), path: path}
}

// agentBackend returns a connection to an agent holding keys.
type agentBackend func(t *testing.T, keys []testKey) io.ReadWriter

// realAgent starts `ssh-agent -D -a SOCK`, loads the keys with ssh-add and
// connects to the socket.
func realAgent(t *testing.T, keys []testKey) io.ReadWriter {
	agentBin := needTool(t, "ssh-agent")
	addBin := needTool(t, "ssh-add")
	// Unix socket paths are limited to ~108 bytes; t.TempDir can be long.
	dir, err := os.MkdirTemp("", "signet-agent")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "sock")
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, agentBin, "-D", "-a", sock)
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatalf("start ssh-agent: %v", err)
	}
	t.Cleanup(func() { cancel(); cmd.Wait() })
	var conn net.Conn
	for i := 0; ; i++ {
		conn, err = net.Dial("unix", sock)
		if err == nil {
			break
		}
		if i == 500 {
			t.Fatalf("ssh-agent socket never appeared: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Cleanup(func() { conn.Close() })
	for _, k := range keys {
		add := exec.Command(addBin, k.path)
		add.Env = []string{"SSH_AUTH_SOCK=" + sock}
		if out, err := add.CombinedOutput(); err != nil {
			t.Fatalf("ssh-add %s: %v\n%s", k.path, err, out)
		}
	}
	return conn
}

// keyringAgent serves agent.NewKeyring over an in-memory pipe.
func keyringAgent(t *testing.T, keys []testKey) io.ReadWriter {
	kr := agent.NewKeyring()
	for _, k := range keys {
		if err := kr.Add(agent.AddedKey{PrivateKey: k.priv, Comment: filepath.Base(k.path)}); err != nil {
			t.Fatal(err)
		}
	}
	client, server := net.Pipe()
	go agent.ServeAgent(kr, server)
	t.Cleanup(func() { client.Close(); server.Close() })
	return client
}

func TestAgentSignerRealAgent(t *testing.T)    { testAgentSigner(t, realAgent) }
func TestAgentSignerKeyringAgent(t *testing.T) { testAgentSigner(t, keyringAgent) }

func testAgentSigner(t *testing.T, backend agentBackend) {
	dir := t.TempDir()
	alice := newTestKey(t, dir, "ed25519", "alice")
	bob := newTestKey(t, dir, "ed25519", "bob")
	rsaKey := newTestKey(t, dir, "rsa", "legacy-rsa")
	ecKey := newTestKey(t, dir, "ecdsa", "legacy-ecdsa")
	bobPubLine := string(ssh.MarshalAuthorizedKey(bob.pub))
	stranger := newTestKey(t, dir, "ed25519", "stranger")

	cases := []struct {
		name    string
		keys    []testKey
		want    string
		wantKey ssh.PublicKey
		wantErr []string // substrings the error must hold
		is      error
	}{
		{name: "only ed25519 key", keys: []testKey{alice}, wantKey: alice.pub},
		{name: "ed25519 among rsa and ecdsa", keys: []testKey{rsaKey, alice, ecKey}, wantKey: alice.pub},
		{name: "two keys, none chosen", keys: []testKey{alice, bob},
			wantErr: []string{"2 ed25519 keys", Fingerprint(alice.pub), Fingerprint(bob.pub), "alice", "bob"}},
		{name: "two keys, chosen by fingerprint", keys: []testKey{alice, bob}, want: Fingerprint(bob.pub), wantKey: bob.pub},
		{name: "two keys, chosen by .pub contents", keys: []testKey{alice, bob}, want: bobPubLine, wantKey: bob.pub},
		{name: "wanted key not held", keys: []testKey{alice, bob}, want: Fingerprint(stranger.pub), is: ErrNoAgentKey,
			wantErr: []string{Fingerprint(stranger.pub), Fingerprint(alice.pub), Fingerprint(bob.pub)}},
		{name: "rsa only", keys: []testKey{rsaKey}, is: ErrNoAgentKey,
			wantErr: []string{"no ed25519 key", "ssh-rsa", Fingerprint(rsaKey.pub), "hint:"}},
		{name: "empty agent", is: ErrNoAgentKey, wantErr: []string{"no keys", "hint: ssh-add"}},
		{name: "want is garbage", keys: []testKey{alice}, want: "not-a-key", wantErr: []string{"neither a SHA256: fingerprint nor a public key"}},
		{name: "want names an rsa key", keys: []testKey{alice, rsaKey}, want: string(ssh.MarshalAuthorizedKey(rsaKey.pub)), is: ErrKeyType},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			conn := backend(t, tc.keys)
			s, err := AgentSigner(conn, tc.want)
			if tc.wantKey != nil {
				if err != nil {
					t.Fatal(err)
				}
				mustSignAs(t, s, tc.wantKey)
				return
			}
			if err == nil {
				t.Fatalf("got key %s, want an error", Fingerprint(s.PublicKey()))
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %v is not %v", err, tc.is)
			}
			for _, want := range tc.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not mention %q", err, want)
				}
			}
		})
	}
}
