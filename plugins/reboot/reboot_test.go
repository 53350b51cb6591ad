package reboot

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/signetbus/signet/plugins"
)

// TestReboot runs the plugin with a harmless command in place of
// `systemctl reboot` (a real reboot needs systemd as PID 1 and would take
// the machine down): it reports the boot id it read, runs the command as
// an argument vector, and reports a failing command.
func TestReboot(t *testing.T) {
	dir := t.TempDir()
	bootFile := filepath.Join(dir, "boot_id")
	os.WriteFile(bootFile, []byte("4f1c2d3e-0000-4000-8000-000000000001\n"), 0o600)
	marker := filepath.Join(dir, "rebooted")
	cfg, _ := json.Marshal(Config{Command: []string{"touch", marker}, BootIDFile: bootFile})
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(DefaultCommand, []string{"systemctl", "reboot"}) {
		t.Fatalf("a config changed the default command: %v", DefaultCommand)
	}
	if err := p.Describe().Check(); err != nil {
		t.Fatal(err)
	}
	params, err := plugins.Prepare(p, "reboot", map[string]any{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := p.Run(context.Background(), &plugins.Request{Action: "reboot", Params: params})
	if err != nil {
		t.Fatal(err)
	}
	if res.Data["boot_id"] != "4f1c2d3e-0000-4000-8000-000000000001" || !res.Changed {
		t.Errorf("result %+v", res)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Errorf("the command did not run: %v", err)
	}

	cfg, _ = json.Marshal(Config{Command: []string{"false"}, BootIDFile: bootFile})
	p, _ = New(cfg)
	if _, err := p.Run(context.Background(), &plugins.Request{Action: "reboot"}); err == nil || !strings.Contains(err.Error(), "false exited with status 1") {
		t.Errorf("failing command: err = %v", err)
	}
	def, err := New(nil)
	if err != nil || !slices.Equal(def.(*Reboot).cfg.Command, []string{"systemctl", "reboot"}) {
		t.Errorf("default config: %v %+v", err, def)
	}
	if _, err := New(json.RawMessage(`{"command":[]}`)); err == nil {
		t.Error("an empty command was accepted")
	}
	if _, err := New(json.RawMessage(`{"shell":"reboot"}`)); err == nil {
		t.Error("an unknown key was accepted")
	}
}
