package cli

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/signetbus/signet/internal/stage"
)

// runDemo runs `signet demo ARGS` in-process and returns the exit code,
// stdout and stderr.
func runDemo(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := Main(context.Background(), append([]string{"demo"}, args...), IO{In: strings.NewReader(""), Out: &out, Err: &errOut, Getenv: envMap(nil)})
	t.Logf("signet demo %s: exit %d\n%s\nstderr:\n%s", strings.Join(args, " "), code, out.String(), errOut.String())
	return code, out.String(), errOut.String()
}

// needReal skips unless every backend is real here (CI installs them).
func needReal(t *testing.T) {
	t.Helper()
	for k, v := range stage.Detect(false) {
		if !strings.HasPrefix(v, "real") {
			t.Skipf("backend %s is missing: %s", k, v)
		}
	}
}

// TestDemoReal rolls 1.0 to 1.1 over three hosts with real apt/dpkg,
// runit, HAProxy and Alertmanager, and checks the demo's own verification:
// every app and every answer through HAProxy is 1.1.
func TestDemoReal(t *testing.T) {
	needReal(t)
	dir := filepath.Join(t.TempDir(), "fleet")
	code, out, _ := runDemo(t, "--hosts", "3", "--dir", dir)
	if code != ExitOK {
		t.Fatalf("exit %d, want 0", code)
	}
	for _, want := range []string{"package      real: apt-get", "service      real: runit", "haproxy      real: haproxy", "maintenance  real: Alertmanager",
		"run ", "RECAP", "web1   serves 1.1  ok", "web2   serves 1.1  ok", "web3   serves 1.1  ok", "every host serves 1.1"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if !strings.Contains(out, "through haproxy (6 requests): ") || strings.Contains(out, "demo 1.0 on") {
		t.Errorf("want every answer through haproxy to be 1.1")
	}
	// The kept client config lets an operator deploy the app by name to env lab.
	cfg, err := loadClientConfig(filepath.Join(dir, "client.yaml"), "lab", envMap(nil))
	if err != nil {
		t.Fatalf("--dir: the fleet's client config should stay and have env lab: %v", err)
	}
	if p, err := appFile(cfg, "demo"); err != nil || p != filepath.Join(dir, "demo.yaml") {
		t.Errorf("app file demo: got %q, %v", p, err)
	}
}

// TestDemoBreakReal breaks the 1.1 package on web2: the deploy halts with
// web2's update error (dpkg's preinst failure), web2 is left out of
// rotation, and the exit code is 1.
func TestDemoBreakReal(t *testing.T) {
	needReal(t)
	code, out, errOut := runDemo(t, "--hosts", "3", "--break", "web2")
	if code != ExitFailed {
		t.Fatalf("exit %d, want 1", code)
	}
	for _, want := range []string{"error: web2: update: update demo 1.1", "pre-installation script subprocess returned error exit status 1", "left out of rotation: ", "web2 (maintenance, drained)"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if strings.Contains(out, "every host serves 1.1") {
		t.Errorf("output claims success")
	}
	if !strings.Contains(errOut, "signet: demo: deploy failed: web2: update:") || !strings.Contains(errOut, "hint: --break web2 broke it on purpose") {
		t.Errorf("stderr lacks the error and the hint")
	}
}

// TestDemoSandbox runs the demo end to end with every backend sandboxed,
// then with web2 broken.
func TestDemoSandbox(t *testing.T) {
	code, out, _ := runDemo(t, "--hosts", "3", "--sandbox")
	if code != ExitOK {
		t.Fatalf("exit %d, want 0", code)
	}
	for _, want := range []string{"package      sandbox: --sandbox", "haproxy      sandbox: --sandbox", "bus          real: embedded NATS", "RECAP", "every host serves 1.1"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	code, out, errOut := runDemo(t, "--hosts", "3", "--sandbox", "--break", "web2")
	if code != ExitFailed {
		t.Fatalf("--break: exit %d, want 1", code)
	}
	if !strings.Contains(out, "error: web2: update: update demo 1.1") || !strings.Contains(out, "web2 (maintenance, drained)") || !strings.Contains(errOut, "web2: update:") {
		t.Errorf("--break web2: want web2's update error and web2 out of rotation")
	}
}

// TestDemoCA: the demo's rolling deploy runs in certificate mode too (the
// operator's run state and requests signed with a user certificate, every
// reply by a host certificate, both from the real ssh-keygen).
func TestDemoCA(t *testing.T) {
	if _, err := exec.LookPath("ssh-keygen"); err != nil {
		t.Skip("ssh-keygen not installed (Debian package openssh-client)")
	}
	code, out, errOut := runDemo(t, "--hosts", "3", "--sandbox", "--ca")
	if code != ExitOK {
		t.Fatalf("exit %d, want 0\n%s%s", code, out, errOut)
	}
	for _, want := range []string{"trust        real: ssh-keygen user CA and host CA", "RECAP", "every host serves 1.1"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q\n%s", want, out)
		}
	}
}

// TestDemoUsage checks the flags demo refuses before starting anything.
func TestDemoUsage(t *testing.T) {
	for _, args := range [][]string{
		{"--hosts", "0"},
		{"--hosts", "51"},
		{"--hosts", "3", "--break", "web4"},
		{"--break", "web0"},
		{"--break", "db1"},
		{"--break", "web1;rm"},
		{"--break", "-web1"},
		{"extra"},
	} {
		if code, _, _ := runDemo(t, args...); code != ExitUsage {
			t.Errorf("demo %v: exit %d, want %d", args, code, ExitUsage)
		}
	}
}
