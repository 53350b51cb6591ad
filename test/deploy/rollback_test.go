package deploy

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/signetbus/signet/bus"
	"github.com/signetbus/signet/internal/stage"
	"github.com/signetbus/signet/workflows"
	"github.com/signetbus/signet/workflows/deploy"
)

// provenanceRecord is one audit line with the fields these tests read.
type provenanceRecord struct {
	Agent      string          `json:"agent"`
	Action     string          `json:"action"`
	Params     map[string]any  `json:"params"`
	Decision   string          `json:"decision"`
	Provenance *bus.Provenance `json:"provenance"`
}

// readProvenance returns host's audit records from the skip-th on.
func readProvenance(t *testing.T, s *stage.Stage, host string, skip int) []provenanceRecord {
	t.Helper()
	f, err := os.Open(auditPath(s, host))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []provenanceRecord
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for n := 0; sc.Scan(); n++ {
		if n < skip {
			continue
		}
		var r provenanceRecord
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("%s audit line %d: %v", host, n+1, err)
		}
		out = append(out, r)
	}
	return out
}

// artifactSHA256 is the digest of the stage's .deb of version.
func artifactSHA256(t *testing.T, s *stage.Stage, version string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(filepath.Dir(s.AppFile), "repo", fmt.Sprintf("%s_%s_all.deb", s.App, version)))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// dpkgVersion is what dpkg -s says of the app in host's root.
func dpkgVersion(t *testing.T, s *stage.Stage, host string) string {
	t.Helper()
	out, _ := exec.Command("dpkg", "--admindir="+filepath.Join(s.Host(host).Root, "var/lib/dpkg"), "-s", "--", s.App).CombinedOutput()
	for _, line := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(line, "Version: "); ok {
			return v
		}
	}
	return "none"
}

// TestRollbackOnTheStage is on_failure rollback on the real stage (dpkg,
// runit, HAProxy, Alertmanager): 1.1 is bad on one host of batch 2 (its
// health check fails once 1.1 runs there). The run starts nothing more;
// the hosts of batch 1 (deployed), the failed host and its batch-mate are
// all brought back to 1.0 through drain, stop, install, check, start,
// health and enable, each back in rotation only after its health check;
// batch 3 is never touched. No show stat sample has more servers out of
// rotation than max_unavailable. The recap says per host "rolled back from
// 1.1 to 1.0", and every audit record of the run carries the run id,
// ticket and build URL; the rollback's records carry the reason. The
// artifacts' digests travel too: every install was verified.
func TestRollbackOnTheStage(t *testing.T) {
	s := startStage(t)
	op := operator(t, s)
	a := loadApp(t, s)
	batches := plan(t, s, op, "1.1")
	victim := batches[1][0]
	marks := auditMarks(t, s)
	rec := &recorder{}
	// 1.1 is bad on the victim: its app answers 500 from the deploy's
	// health check on, until the rollback reinstalls 1.0.
	rec.hook = func(e workflows.Event) {
		if e.Type != workflows.EventStepStart || e.Host != victim {
			return
		}
		switch {
		case e.Step == deploy.StepHealth && !e.Rollback:
			if err := s.BreakHealth(victim); err != nil {
				t.Error(err)
			}
		case e.Step == deploy.StepUpdate && e.Rollback:
			if err := s.FixHealth(victim); err != nil {
				t.Error(err)
			}
		}
	}
	app, err := os.ReadFile(s.AppFile)
	if err != nil {
		t.Fatal(err)
	}
	appFile := filepath.Join(t.TempDir(), "app.yaml")
	if err := os.WriteFile(appFile, append(app, fmt.Sprintf("sha256:\n  \"1.0\": %s\n", artifactSHA256(t, s, "1.0"))...), 0o644); err != nil {
		t.Fatal(err)
	}
	o := deployOpts(s, op, "1.1", rec)
	o.AppFile = appFile
	o.Policy.OnFailure = workflows.OnFailureRollback
	o.Provenance = deploy.Provenance{Ticket: "CHG-4711", BuildURL: "https://jenkins.example.com/job/demo/7/", SHA256: artifactSHA256(t, s, "1.1")}
	w := watchRotation(s, 25*time.Millisecond)
	recap, err := deploy.Run(testCtx(t), nil, o)
	samples, errs := w.Stop()
	if err == nil || recap == nil || recap.Status != workflows.StatusFailed {
		t.Fatalf("deploy: %v, want %s's health failure", err, victim)
	}
	t.Logf("deploy error: %v", err)
	rec.done(t)
	var text strings.Builder
	recap.WriteText(&text)
	t.Logf("recap:\n%s", text.String())

	touched := append(append([]string(nil), batches[0]...), batches[1]...)
	for _, h := range touched {
		hr := recap.Host(h)
		if hr.Status != workflows.HostRolledBack || hr.Rollback != "rolled back from 1.1 to 1.0" {
			t.Errorf("recap %s: %s %q, want rolled_back, \"rolled back from 1.1 to 1.0\"", h, hr.Status, hr.Rollback)
		}
		if st := fleet(t, s)[h]; st.Installed != "1.0" || st.Serves != "1.0" || st.HAProxy != "UP" || st.Silenced {
			t.Errorf("%s: %s; want 1.0 in service: UP, no silence", h, st)
		}
		if v := dpkgVersion(t, s, h); v != "1.0" {
			t.Errorf("%s: dpkg -s says %s, want 1.0", h, v)
		}
	}
	if !strings.Contains(text.String(), "rollback:\n") || !strings.Contains(text.String(), "  "+victim+": rolled back from 1.1 to 1.0\n") {
		t.Errorf("the text recap does not list the rollback")
	}
	if len(recap.OutOfRotation) != 0 {
		t.Errorf("left out of rotation: %v, want none", recap.OutOfRotation)
	}
	for _, h := range batches[2] {
		wantUntouched(t, s, a, marks, h, "1.0")
	}
	limit := recap.Limits.MaxUnavailable
	for i, out := range samples {
		if len(out) > limit {
			t.Errorf("show stat sample %d: %v out of rotation, more than max_unavailable %d", i, out, limit)
			break
		}
	}
	t.Logf("%d show stat samples, %d errors, peak %d", len(samples), len(errs), recap.Limits.PeakUnavailable)

	// Every install went through the digest check, 1.1 and 1.0 alike.
	verified := 0
	for _, e := range rec.Events() {
		if e.Type == workflows.EventStepDone && e.Step == deploy.StepUpdate && e.Status == workflows.StepChanged {
			if !strings.Contains(e.Summary, "sha256 verified") {
				t.Errorf("%s update (rollback %v): %q, want sha256 verified", e.Host, e.Rollback, e.Summary)
			}
			verified++
		}
	}
	if verified != 2*len(touched) {
		t.Errorf("%d verified installs, want %d (1.1 and back to 1.0 on %d hosts)", verified, 2*len(touched), len(touched))
	}

	// The audit: every record of the run carries its provenance; the
	// rollback's carry the reason.
	for _, h := range touched {
		var rollbacks int
		for _, r := range readProvenance(t, s, h, marks[h]) {
			if r.Agent == "haproxy" && r.Params["server"] != h {
				continue // another host's drain or enable
			}
			p := r.Provenance
			if p == nil || p.Run != recap.Run || p.Ticket != "CHG-4711" || p.BuildURL != "https://jenkins.example.com/job/demo/7/" {
				t.Errorf("%s: audit %s.%s %s carries provenance %+v, want run %s, the ticket and the build URL", h, r.Agent, r.Action, r.Decision, p, recap.Run)
				continue
			}
			if r.Agent == "package" && r.Action == "update" && r.Params["version"] == "1.0" {
				if !strings.HasPrefix(p.Reason, "rollback of run "+recap.Run+" after "+victim+": health:") {
					t.Errorf("%s: rollback update audited with reason %q", h, p.Reason)
				}
				rollbacks++
			}
		}
		if rollbacks == 0 {
			t.Errorf("%s: no audited rollback update to 1.0", h)
		}
	}
}

// TestWrongDigestRefusedOnTheStage: a deploy whose --sha256 is not the
// artifact's fails on the first host's update before dpkg runs: dpkg -s
// still shows 1.0, the error names both digests, and the rollback puts
// the host back into rotation at 1.0. Nothing else is touched.
func TestWrongDigestRefusedOnTheStage(t *testing.T) {
	s := startStage(t)
	op := operator(t, s)
	batches := plan(t, s, op, "1.1")
	first := batches[0]
	rec := &recorder{}
	o := deployOpts(s, op, "1.1", rec)
	o.Policy.OnFailure = workflows.OnFailureRollback
	o.App, o.AppFile = nil, s.AppFile
	wrong := strings.Repeat("ab", 32)
	o.Provenance = deploy.Provenance{SHA256: wrong, Ticket: "CHG-1"}
	recap, err := deploy.Run(testCtx(t), nil, o)
	if err == nil {
		t.Fatal("the deploy with a wrong digest succeeded")
	}
	t.Logf("deploy error: %v", err)
	right := artifactSHA256(t, s, "1.1")
	for _, want := range []string{"update:", "has sha256 " + right, "expected " + wrong, "refused before installing"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not say %q", want)
		}
	}
	for _, h := range s.Hosts {
		if v := dpkgVersion(t, s, h.Identity); v != "1.0" {
			t.Errorf("%s: dpkg -s says %s, want 1.0", h.Identity, v)
		}
		if st := fleet(t, s)[h.Identity]; st.Installed != "1.0" || st.Serves != "1.0" || st.HAProxy != "UP" || st.Silenced {
			t.Errorf("%s: %s; want 1.0 in service", h.Identity, st)
		}
		if _, err := os.Stat(s.BreakMarker(h.Identity, "1.1")); err == nil {
			t.Errorf("%s: break marker present", h.Identity)
		}
	}
	n := 0
	for _, h := range first {
		if recap.Host(h).Status != workflows.HostPending {
			n++
		}
	}
	if n == 0 {
		t.Errorf("recap %+v: no host of batch 1 was tried", recap.Hosts)
	}
}
