package bus

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/signetbus/signet/internal/sshsig"
	"github.com/signetbus/signet/internal/wire"
)

// TestRecordedRequestVerifiesWithSSHKeygen proves that a request frame,
// split into its payload and armored signature, verifies with stock
// OpenSSH, and that OpenSSH refuses it once a parameter is changed.
func TestRecordedRequestVerifiesWithSSHKeygen(t *testing.T) {
	keygen, err := exec.LookPath("ssh-keygen")
	if err != nil {
		t.Skip("ssh-keygen not installed (Debian package openssh-client): ", err)
	}
	op := newSigner(t)
	req := &Request{Version: ProtocolVersion, ID: NewID(), Sender: Sender{User: "alice", Key: ssh.FingerprintSHA256(op.PublicKey())},
		Collective: "prod", Agent: "package", Action: "update", Params: map[string]any{"package": "middleware", "version": "1.4.2"},
		Filter: Filter{Fact: []string{"role=web"}}, Created: 1700000000000, TTL: 60}
	frame, err := SignRequest(op, req)
	if err != nil {
		t.Fatal(err)
	}
	env, err := wire.Parse(frame)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	payload := filepath.Join(dir, "request.json")
	os.WriteFile(payload, env.Payload, 0o600)
	os.WriteFile(payload+".sig", sshsig.Armor(env.Sig), 0o600)
	signers := filepath.Join(dir, "allowed_signers")
	os.WriteFile(signers, []byte("alice@bastion "+string(ssh.MarshalAuthorizedKey(op.PublicKey()))), 0o600)

	verify := func(data []byte) (string, error) {
		cmd := exec.Command(keygen, "-Y", "verify", "-f", signers, "-I", "alice@bastion", "-n", RequestNamespace, "-s", payload+".sig")
		cmd.Stdin = bytes.NewReader(data)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := verify(env.Payload); err != nil || !strings.Contains(out, "Good \"signet-request@v1\" signature") {
		t.Fatalf("ssh-keygen refused a genuine request: %v\n%s", err, out)
	}
	tampered := bytes.Replace(env.Payload, []byte("1.4.2"), []byte("6.6.6"), 1)
	if out, err := verify(tampered); err == nil {
		t.Fatalf("ssh-keygen accepted a tampered request:\n%s", out)
	}
}
