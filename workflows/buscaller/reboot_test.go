package buscaller_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/signetbus/signet/internal/lab"
	"github.com/signetbus/signet/plugins"
	"github.com/signetbus/signet/plugins/reboot"
	"github.com/signetbus/signet/workflows"
)

// TestRebootStepOverTheBus runs a reboot step with wait_boot over the
// signed bus against real responders with the real reboot plugin. A real
// reboot cannot be done here (it needs systemd as PID 1 and would take the
// test machine down), so the plugin's command is `touch MARKER` instead of
// `systemctl reboot`, and the test simulates the reboot when the marker
// appears: it kills the host's signetd (its registry entry stays, with the
// old boot id, as after a power cut) and starts it again with a new boot
// id. The step succeeds only once the new boot id is registered; a host
// that never comes back fails the step at wait_boot, naming the old one.
func TestRebootStepOverTheBus(t *testing.T) {
	dir := t.TempDir()
	l, c := startLab(t, lab.Options{Hosts: 3, Plugins: func(h *lab.HostInfo) (map[string]plugins.Plugin, error) {
		cfg, _ := json.Marshal(reboot.Config{Command: []string{"touch", filepath.Join(dir, "rebooted-"+h.Identity)}})
		p, err := reboot.New(cfg)
		return map[string]plugins.Plugin{"reboot": p}, err
	}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	before, err := c.BootID(ctx, "web2")
	if err != nil || before == "" {
		t.Fatalf("web2's registered boot id %q, %v: signetd must publish one", before, err)
	}
	back := make(chan error, 1)
	go func() {
		for ctx.Err() == nil {
			if _, err := os.Stat(filepath.Join(dir, "rebooted-web2")); err == nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		l.KillHost("web2")
		time.Sleep(time.Second) // down for a while
		l.Host("web2").BootID = "simulated-second-boot"
		back <- l.StartHost("web2")
	}()
	step := workflows.Step{Name: "reboot", Agent: "reboot", Action: "reboot", WaitBoot: 30 * time.Second}
	w := &workflows.Workflow{Version: 1, Name: "reboot", Hosts: []string{"env=lab"}, Steps: []workflows.Step{step}}
	var events []workflows.Event
	e := &workflows.Engine{Caller: c, Store: workflows.NewMemStore(), Sink: func(ev workflows.Event) error { events = append(events, ev); return nil }}
	recap, err := e.Run(ctx, nil, &workflows.Job{Workflow: w, State: workflows.NewRunState("reboot", [][]string{{"web2"}}, nil)})
	if err != nil {
		id, gerr := c.BootID(ctx, "web2")
		_, serr := os.Stat(filepath.Join(dir, "rebooted-web2"))
		t.Fatalf("reboot step: %v (now %q %v; marker %v; events %+v)", err, id, gerr, serr, events)
	}
	if err := <-back; err != nil {
		t.Fatal(err)
	}
	if recap.Host("web2").Status != workflows.HostDone {
		t.Fatalf("web2: %s", recap.Host("web2").Status)
	}
	var summary string
	for _, ev := range events {
		if ev.Type == workflows.EventStepDone {
			summary = ev.Summary
		}
	}
	if !strings.Contains(summary, "boot id simulated-second-boot (was "+before+")") {
		t.Errorf("step summary %q does not name both boot ids", summary)
	}

	// web3 "reboots" (touches its marker and answers) but never comes
	// back with a new boot id.
	step.WaitBoot = 2 * time.Second
	w.Steps = []workflows.Step{step}
	_, err = e.Run(ctx, nil, &workflows.Job{Workflow: w, State: workflows.NewRunState("reboot", [][]string{{"web3"}}, nil)})
	var se *workflows.StepError
	if !errors.As(err, &se) || se.Host != "web3" {
		t.Fatalf("err = %v, want web3's step to fail", err)
	}
	t.Logf("web3: %s", se.Detail)
}
