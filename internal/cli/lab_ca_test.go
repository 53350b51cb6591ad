package cli

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/signetbus/signet/internal/testio"
)

// TestREADMELabCA runs the README's certificate-mode commands: `signet lab
// --ca` (the real command, with the real ssh-keygen), then in "the second
// terminal" ssh-keygen -L on the operator's certificate, the known_hosts of
// one @cert-authority line, and a ping that every host answers, signed with
// the certificate and replied to by certified hosts.
func TestREADMELabCA(t *testing.T) {
	keygen, err := exec.LookPath("ssh-keygen")
	if err != nil {
		t.Skip("ssh-keygen not installed (Debian package openssh-client)")
	}
	dir := filepath.Join(t.TempDir(), ".lab-ca")
	ctx, cancel := context.WithCancel(context.Background())
	labErr := &testio.Buffer{}
	done := make(chan int, 1)
	go func() {
		done <- Main(ctx, []string{"lab", "--ca", "--hosts", "2", "--dir", dir},
			IO{In: strings.NewReader(""), Out: &testio.Buffer{}, Err: labErr, Getenv: envMap(map[string]string{"USER": "tester"})})
	}()
	t.Cleanup(func() {
		cancel()
		if code := <-done; code != ExitOK {
			t.Errorf("signet lab --ca: exit %d\n%s", code, labErr)
		}
	})
	for deadline := time.Now().Add(60 * time.Second); !strings.Contains(labErr.String(), "Ctrl-C stops the lab"); {
		select {
		case code := <-done:
			done <- code
			t.Fatalf("signet lab --ca exited %d\n%s", code, labErr)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("the lab did not come up\n%s", labErr)
		}
	}
	if !strings.Contains(labErr.String(), "certificate mode: user CA") {
		t.Errorf("the lab does not say it runs in certificate mode:\n%s", labErr)
	}

	out, err := exec.Command(keygen, "-L", "-f", filepath.Join(dir, "operator_key-cert.pub")).CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("user certificate")) || !bytes.Contains(out, []byte(`Key ID: "operator"`)) ||
		!bytes.Contains(out, []byte("admin")) {
		t.Fatalf("ssh-keygen -L: %v\n%s", err, out)
	}
	known, _ := os.ReadFile(filepath.Join(dir, "known_hosts"))
	if lines := strings.Split(strings.TrimSpace(string(known)), "\n"); len(lines) != 1 || !strings.HasPrefix(lines[0], "@cert-authority * ssh-ed25519 ") {
		t.Fatalf("known_hosts is not one @cert-authority line:\n%s", known)
	}
	auth, _ := os.ReadFile(filepath.Join(dir, "authorized_keys"))
	opPub, _ := os.ReadFile(filepath.Join(dir, "operator_key.pub"))
	if !bytes.Contains(auth, []byte("cert-authority,")) || bytes.Contains(auth, bytes.Fields(opPub)[1]) {
		t.Fatalf("the hosts trust the operator's key, not the CA:\n%s", auth)
	}

	var stdout, stderr bytes.Buffer
	env := envMap(map[string]string{"SIGNET_CONFIG": filepath.Join(dir, "client.yaml"), "USER": "tester"})
	if code := Main(context.Background(), []string{"ping"}, IO{In: strings.NewReader(""), Out: &stdout, Err: &stderr, Getenv: env}); code != ExitOK ||
		!strings.Contains(stdout.String(), "web1\tok") || !strings.Contains(stdout.String(), "web2\tok") {
		t.Fatalf("ping: exit %d\n%s%s", code, &stdout, &stderr)
	}
	rec, _ := os.ReadFile(filepath.Join(dir, "hosts", "web1", "audit.jsonl"))
	if !bytes.Contains(rec, []byte(`"principal":"operator","user":"operator"`)) {
		t.Fatalf("web1 did not record the certificate's key ID as the operator:\n%s", rec)
	}
}
