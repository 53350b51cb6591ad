package workflows_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	. "github.com/signetbus/signet/workflows"
	"github.com/signetbus/signet/workflows/fleettest"
)

// TestRunOutputsRedactSecrets runs a workflow whose step echoes secrets (a
// token in a URL's query string in its summary, an api_key in its data, a
// signed URL in a failing host's error) and proves that none reaches the
// JSON lines, the text progress and recap, the run log file, or the plan.
func TestRunOutputsRedactSecrets(t *testing.T) {
	leaks := []string{"T0KEN", "AKIAXYZ", "S1GNATURE", "hunter2"}
	check := func(what, out string) {
		t.Helper()
		for _, l := range leaks {
			if strings.Contains(out, l) {
				t.Errorf("%s holds %q:\n%s", what, l, out)
			}
		}
	}
	fleet := func() *fleettest.Fleet {
		f := drFleet()
		f.Handlers["dbrestore.restore"] = func(host string, n *fleettest.Node, p map[string]any) Result {
			return Result{Changed: true, Summary: "restored from https://backups.example/orders.dump?token=T0KEN",
				Data: map[string]any{"restored": true, "api_key": "AKIAXYZ"}}
		}
		f.Fail["db3 dbrestore.restore"] = "GET https://backups.example/orders.dump?X-Amz-Signature=S1GNATURE: 403"
		return f
	}
	for _, format := range []string{"json", "text"} {
		var out bytes.Buffer
		logFile := filepath.Join(t.TempDir(), "run.log")
		o := Options{Workflow: drWorkflow(t), Env: "dr", Vars: map[string]string{"backup": "2024-06-01"}, Yes: true,
			Output: &out, Format: format, LogFile: logFile, Caller: fleet(), Store: NewMemStore(), User: "alice@bastion"}
		if _, err := RunWorkflow(context.Background(), nil, o); err == nil {
			t.Fatalf("%s: db3's restore failed, the run must fail", format)
		}
		check(format+" output", out.String())
		b, err := os.ReadFile(logFile)
		if err != nil {
			t.Fatal(err)
		}
		check("the run log", string(b))
		if !strings.Contains(string(b), "https://backups.example/orders.dump?token=") {
			t.Errorf("the run log lost the URL's host and path:\n%s", b)
		}
	}

	for _, format := range []string{"json", "text"} {
		var out bytes.Buffer
		o := Options{Workflow: drWorkflow(t), Env: "dr", Vars: map[string]string{"backup": "https://u:hunter2@b.example/x?token=T0KEN"},
			Plan: true, Output: &out, Format: format, Caller: fleet(), Store: NewMemStore(), User: "alice@bastion"}
		if _, err := RunWorkflow(context.Background(), nil, o); err != nil {
			t.Fatal(err)
		}
		check(format+" plan", out.String())
	}
}
