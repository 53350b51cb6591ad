package deploy

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/signetbus/signet/internal/cli"
)

// signetEnv runs the signet CLI in-process with extra environment
// variables (Jenkins' BUILD_URL).
func signetEnv(t *testing.T, clientConfig string, extra map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr syncBuffer
	env := map[string]string{"SIGNET_CONFIG": clientConfig, "USER": "tester"}
	for k, v := range extra {
		env[k] = v
	}
	code := cli.Main(context.Background(), args, cli.IO{In: strings.NewReader(""), Out: &stdout, Err: &stderr, Getenv: func(k string) string { return env[k] }})
	return code, stdout.String(), stderr.String()
}

// TestDeployProvenanceFlags runs `signet deploy` as Jenkins would: BUILD_URL
// in the environment (with a credential and a query, which must not be
// signed or audited), --ticket and --sha256 of the real .deb. Every audit
// record of the run on every host it touched carries the ticket and the
// cleaned build URL, and every install says it was verified. A malformed
// digest is a usage error (exit 2) before anything is sent.
func TestDeployProvenanceFlags(t *testing.T) {
	s := startStage(t)
	cfg := s.Lab.ClientConfig
	before := auditSizes(t, s)
	code, _, errOut := signetEnv(t, cfg, nil, "deploy", "demo", "1.1", "--env", s.Env, "--yes", "--sha256", "xyz")
	if code != 2 || !strings.Contains(errOut, "--sha256: want 64 hex digits") {
		t.Errorf("--sha256 xyz: exit %d, stderr %q; want a usage error", code, errOut)
	}
	for h, n := range auditSizes(t, s) {
		if n != before[h] {
			t.Errorf("%s: audit log grew on a refused deploy", h)
		}
	}
	marks := auditMarks(t, s)
	digest := artifactSHA256(t, s, "1.1")
	jenkins := map[string]string{"BUILD_URL": "https://ci:s3cret@jenkins.example.com/job/demo/12/?token=abc"}
	code, out, errOut := signetEnv(t, cfg, jenkins, "deploy", "demo", "1.1", "--env", s.Env, "--yes", "--output", "json",
		"--ticket", "CHG-2024", "--sha256", strings.ToUpper(digest))
	if code != 0 {
		t.Fatalf("deploy: exit %d\n%s", code, errOut)
	}
	verified := 0
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, `"type":"step_done"`) && strings.Contains(line, `"step":"update"`) && strings.Contains(line, "sha256 verified") {
			verified++
		}
	}
	if verified != len(s.Hosts) {
		t.Errorf("%d verified installs in the output, want %d", verified, len(s.Hosts))
	}
	if strings.Contains(out, "s3cret") || strings.Contains(out, "token=abc") {
		t.Error("the build URL's credential reached the output")
	}
	wantDeployed(t, s, "1.1")
	for _, h := range s.Hosts {
		if b, err := os.ReadFile(auditPath(s, h.Identity)); err != nil || strings.Contains(string(b), "s3cret") {
			t.Errorf("%s: audit log holds the build URL's credential (read error %v)", h.Identity, err)
		}
		recs := readProvenance(t, s, h.Identity, marks[h.Identity])
		if len(recs) == 0 {
			t.Errorf("%s: no audit records", h.Identity)
		}
		for _, r := range recs {
			p := r.Provenance
			if p == nil || p.Run == "" || p.Ticket != "CHG-2024" || p.BuildURL != "https://jenkins.example.com/job/demo/12/" {
				t.Errorf("%s: audit %s.%s %s: provenance %+v", h.Identity, r.Agent, r.Action, r.Decision, p)
				break
			}
		}
	}
}
