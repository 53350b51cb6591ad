package workflows_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"

	. "github.com/signetbus/signet/workflows"
	"github.com/signetbus/signet/workflows/fleettest"
)

func TestExpand(t *testing.T) {
	vars := map[string]string{"identity": "web1", "version": "1.4.2"}
	got, err := Expand("http://{{identity}}:8080/{{ version }}", vars)
	if err != nil || got != "http://web1:8080/1.4.2" {
		t.Errorf("Expand = %q, %v", got, err)
	}
	if _, err := Expand("{{versoin}}", vars); err == nil || !strings.Contains(err.Error(), `variable "versoin" is not set`) {
		t.Errorf("Expand of a typo: error = %v", err)
	}
}

func TestParseWorkflowDR(t *testing.T) {
	f, err := os.Open("testdata/dr-restore.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := ParseWorkflow(f)
	if err != nil {
		t.Fatal(err)
	}
	if w.Name != "dr-restore" || len(w.Steps) != 6 || w.Steps[2].Agent != "dbrestore" || w.Vars["backup"] != "latest" || w.Steps[2].Timeout.Hours() != 2 {
		t.Errorf("parsed %+v", w)
	}
}

func TestParseWorkflowRejects(t *testing.T) {
	base := "version: 1\nname: wf\nhosts: [role=db]\n"
	step := "steps:\n  - {name: s, agent: service, action: stop}\n"
	tests := []struct{ name, yaml, want string }{
		{"unknown key", base + step + "colour: red\n", "colour: unknown key"},
		{"unknown step key", base + "steps:\n  - {name: s, agent: service, action: stop, shell: x}\n", "steps[1].shell: unknown key"},
		{"two documents", base + step + "---\nversion: 1\n", "more than one YAML document"},
		{"empty", "", "empty file"},
		{"version", "version: 2\nname: wf\nhosts: [x=y]\n" + step, "version: want 1, found 2"},
		{"name", "version: 1\nname: Bad Name\nhosts: [x=y]\n" + step, `name: want lowercase`},
		{"no hosts", "version: 1\nname: wf\n" + step, "hosts: a discovery filter is required"},
		{"no steps", base, "at least one step"},
		{"duplicate step", base + "steps:\n  - {name: s, agent: service, action: stop}\n  - {name: s, agent: service, action: start}\n", "step s: name used twice"},
		{"bad agent", base + "steps:\n  - {name: s, agent: 'rm -rf', action: stop}\n", "agent: want a plugin name"},
		{"bad action", base + "steps:\n  - {name: s, agent: service, action: ''}\n", "action: want an action name"},
		{"bad target", base + "steps:\n  - {name: s, agent: service, action: stop, target: all}\n", `target: want "each" or "broadcast"`},
		{"broadcast without filter", base + "steps:\n  - {name: s, agent: haproxy, action: drain, target: broadcast}\n", "needs a filter"},
		{"filter on each", base + "steps:\n  - {name: s, agent: service, action: stop, filter: [a=b]}\n", "filter and partial are only for target broadcast"},
		{"shell in filter", base + "steps:\n  - {name: s, agent: haproxy, action: drain, target: broadcast, filter: ['lb=x;reboot']}\n", "shell metacharacters"},
		{"dash filter", base + "steps:\n  - {name: s, agent: haproxy, action: drain, target: broadcast, filter: ['-F']}\n", "leading '-'"},
		{"bad mark", base + "steps:\n  - {name: s, agent: service, action: stop, sets: 'Out Of'}\n", "mark"},
		{"capture reserved", base + "steps:\n  - {name: s, agent: service, action: stop, capture: {version: v}}\n", "capture version"},
		{"negative timeout", base + "steps:\n  - {name: s, agent: service, action: stop, timeout: -1s}\n", "timeout"},
		{"policy", base + step + "on_failure: retry\n", `on_failure: want "hold", "rollback" or "stop_now"`},
		{"rollback without steps", base + step + "on_failure: rollback\n", "no rollback steps"},
		{"rollback steps without policy", base + step + "rollback:\n  - {name: s, agent: service, action: start}\n", "on_failure is not"},
		{"reserved var", base + step + "vars: {identity: x}\n", "reserved"},
		{"batch size", base + step + "batch_size: lots\n", "batch_size"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseWorkflow(strings.NewReader(tt.yaml))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

// drFleet is a fleet of database replicas with the dbrestore site plugin.
func drFleet() *fleettest.Fleet {
	f := fleettest.New([]string{"db1", "db2", "db3"}, []string{"a", "b", "a"})
	for _, n := range f.Nodes {
		if n.Facts["role"] == "app" {
			n.Facts["role"], n.Facts["env"] = "db", "dr"
		}
	}
	f.Handlers["dbrestore.restore"] = func(host string, n *fleettest.Node, p map[string]any) Result {
		if n.Running {
			return Result{Error: "dbrestore " + host + ": postgresql is running"}
		}
		if p["backup"] == "missing" {
			return Result{Data: map[string]any{"restored": false}}
		}
		return Result{Changed: true, Summary: "restored " + p["database"].(string) + " from " + p["backup"].(string), Data: map[string]any{"restored": true}}
	}
	return f
}

func drWorkflow(t *testing.T) *Workflow {
	t.Helper()
	f, _ := os.Open("testdata/dr-restore.yaml")
	defer f.Close()
	w, err := ParseWorkflow(f)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// TestCustomWorkflow runs the DR example through the engine: step order,
// templated params, expect checks, events, and a failing expectation.
func TestCustomWorkflow(t *testing.T) {
	f := drFleet()
	var out bytes.Buffer
	o := Options{Workflow: drWorkflow(t), Env: "dr", Vars: map[string]string{"backup": "2024-06-01"}, Yes: true, Output: &out, Format: "json", Caller: f, Store: NewMemStore(), User: "alice@bastion"}
	recap, err := RunWorkflow(context.Background(), nil, o)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"maintenance.start", "service.stop", "dbrestore.restore", "service.start", "health.http", "maintenance.end"}
	if got := f.HostLog("db2"); !reflect.DeepEqual(got, want) {
		t.Errorf("db2 calls = %v, want %v", got, want)
	}
	var restored []string
	var batches int
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var e Event
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatal(err)
		}
		if e.Type == EventBatchStart {
			batches++
		}
		if e.Type == EventStepDone && e.Step == "restore" {
			restored = append(restored, e.Summary)
		}
	}
	if batches != 3 || !reflect.DeepEqual(restored, []string{"restored orders from 2024-06-01", "restored orders from 2024-06-01", "restored orders from 2024-06-01"}) {
		t.Errorf("batches %d, restore summaries %v", batches, restored)
	}
	if recap.Host("db1").OK != 6 || recap.Host("db1").Changed != 5 {
		t.Errorf("recap db1 = %+v, want ok=6 changed=5", recap.Host("db1"))
	}

	f = drFleet()
	o.Caller, o.Vars, o.Output = f, map[string]string{"backup": "missing"}, &bytes.Buffer{}
	_, err = RunWorkflow(context.Background(), nil, o)
	var se *StepError
	if !errors.As(err, &se) || err.Error() != "db1: restore: want restored=true, found false" {
		t.Fatalf("error = %v", err)
	}
	if len(f.HostLog("db2")) != 0 || !f.Node("db1").Maintenance {
		t.Errorf("db2 touched %v or db1 maintenance ended: hold leaves it", f.HostLog("db2"))
	}
	if _, err := RunWorkflow(context.Background(), nil, Options{Workflow: drWorkflow(t), Vars: map[string]string{"nope": "x"}, Caller: f, Store: NewMemStore(), User: "a"}); err == nil || !strings.Contains(err.Error(), `var "nope" is not declared`) {
		t.Errorf("undeclared var: error = %v", err)
	}
}

// TestCustomWorkflowResume resumes from recorded progress: db1's failed
// restore is retried, its done steps are skipped, db2 and db3 run.
func TestCustomWorkflowResume(t *testing.T) {
	f := drFleet()
	store := NewMemStore()
	o := Options{Workflow: drWorkflow(t), Env: "dr", Vars: map[string]string{"backup": "2024-06-01"}, Yes: true, Caller: f, Store: store, User: "alice@bastion"}
	f.Fail["db1 dbrestore.restore"] = "dbrestore db1: disk full"
	recap, err := RunWorkflow(context.Background(), nil, o)
	if err == nil || err.Error() != "db1: restore: disk full" {
		t.Fatalf("error = %v", err)
	}
	delete(f.Fail, "db1 dbrestore.restore")
	recap, err = ResumeWorkflow(context.Background(), nil, recap.Run, o)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"maintenance.start", "service.stop", "dbrestore.restore", "dbrestore.restore", "service.start", "health.http", "maintenance.end"}
	if got := f.HostLog("db1"); !reflect.DeepEqual(got, want) {
		t.Errorf("db1 calls = %v, want %v", got, want)
	}
	if r := recap.Host("db1"); r.Skipped != 2 || r.Status != HostDone {
		t.Errorf("db1 recap = %+v, want 2 skipped, done", r)
	}
	if f.Node("db3").Maintenance || !f.Node("db3").Running {
		t.Error("db3 not restored by the resume")
	}
}
