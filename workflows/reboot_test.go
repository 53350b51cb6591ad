package workflows_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	. "github.com/signetbus/signet/workflows"
	"github.com/signetbus/signet/workflows/fleettest"
)

// runReboot runs a one-step workflow that reboots web1 and waits for it.
func runReboot(t *testing.T, f *fleettest.Fleet, wait time.Duration) (*Recap, error) {
	t.Helper()
	w := &Workflow{Version: 1, Name: "reboot", Hosts: []string{"role=app"},
		Steps: []Step{{Name: "reboot", Agent: "reboot", Action: "reboot", WaitBoot: wait, Timeout: time.Second}}}
	if err := w.Validate(); err != nil {
		t.Fatal(err)
	}
	e := &Engine{Caller: f, Store: NewMemStore()}
	return e.Run(context.Background(), nil, &Job{Workflow: w, State: NewRunState("reboot", [][]string{{"web1"}}, nil)})
}

// comeBack simulates a reboot in the in-memory fleet: the host goes away
// and, a little later, registers again with boot id "2". No host is really
// rebooted (that needs systemd as PID 1); the real plugin runs `systemctl
// reboot`, see plugins/reboot.
func comeBack(f *fleettest.Fleet, host string) {
	go func() {
		time.Sleep(50 * time.Millisecond)
		f.Update(func(f *fleettest.Fleet) { f.Nodes[host].BootID = "2" })
	}()
}

func TestRebootWaitsForNewBootID(t *testing.T) {
	t.Run("answers, then comes back", func(t *testing.T) {
		f := fleettest.New([]string{"web1"}, []string{"a"})
		f.Handlers["reboot.reboot"] = func(host string, n *fleettest.Node, p map[string]any) Result {
			comeBack(f, host)
			return Result{Changed: true, Data: map[string]any{"boot_id": n.BootID}}
		}
		recap, err := runReboot(t, f, 10*time.Second)
		if err != nil || recap.Host("web1").Status != HostDone {
			t.Fatalf("err %v, recap %+v", err, recap)
		}
	})
	t.Run("goes down before it answers", func(t *testing.T) {
		f := fleettest.New([]string{"web1"}, []string{"a"})
		f.Silent["web1 reboot.reboot"] = true
		f.Hook = func(ctx context.Context, host string, c Call) {
			if c.Agent == "reboot" {
				comeBack(f, host)
			}
		}
		recap, err := runReboot(t, f, 10*time.Second)
		if err != nil || recap.Host("web1").Status != HostDone {
			t.Fatalf("err %v, recap %+v: a reply lost with the reboot must not fail the step", err, recap)
		}
	})
	t.Run("never comes back", func(t *testing.T) {
		f := fleettest.New([]string{"web1"}, []string{"a"})
		f.Handlers["reboot.reboot"] = func(host string, n *fleettest.Node, p map[string]any) Result { return Result{Changed: true} }
		_, err := runReboot(t, f, 200*time.Millisecond)
		var se *StepError
		if !errors.As(err, &se) || !strings.Contains(se.Detail, "web1 did not register again with a new boot id within 200ms (boot id before the reboot: 1)") {
			t.Fatalf("err = %v, want the timeout named", err)
		}
	})
	t.Run("the reboot command fails", func(t *testing.T) {
		f := fleettest.New([]string{"web1"}, []string{"a"})
		f.Fail["web1 reboot.reboot"] = "reboot: systemctl exited with status 1: Access denied"
		_, err := runReboot(t, f, time.Hour)
		if err == nil || !strings.Contains(err.Error(), "Access denied") {
			t.Fatalf("err = %v, want the command's failure, at once", err)
		}
	})
	t.Run("no boot id registered", func(t *testing.T) {
		f := fleettest.New([]string{"web1"}, []string{"a"})
		f.Nodes["web1"].BootID = ""
		f.Handlers["reboot.reboot"] = func(host string, n *fleettest.Node, p map[string]any) Result {
			t.Error("rebooted a host whose return could not be told from a reconnect")
			return Result{}
		}
		if _, err := runReboot(t, f, time.Hour); err == nil || !strings.Contains(err.Error(), "has no boot id in the fleet registry") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("validate", func(t *testing.T) {
		bad := []Step{{Name: "r", Agent: "reboot", Action: "reboot", WaitBoot: time.Minute, Target: TargetBroadcast, Filter: []string{"a=b"}}}
		if err := ValidateSteps(bad); err == nil {
			t.Error("wait_boot on a broadcast accepted")
		}
	})
}
