// Package reboot is signet's "reboot" plugin: it reboots the host it runs
// on. It answers with the boot id the host had before (from
// /proc/sys/kernel/random/boot_id), so that a workflow step with
// wait_boot can wait until the host's signetd registers again with a new
// one.
//
// The reboot itself is one program run as an argument vector, never a
// shell: `systemctl reboot` by default, or the command in the host config.
// systemctl only asks systemd to reboot and returns; the reply usually
// reaches the client before signetd is stopped, but a client must not
// count on it (the workflow engine does not).
package reboot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/signetbus/signet/internal/command"
	"github.com/signetbus/signet/internal/facts"
	"github.com/signetbus/signet/plugins"
)

func init() { plugins.Register(plugins.Info{Name: Name, New: New}) }

// Name is the agent name operators use.
const Name = "reboot"

// DefaultCommand reboots through systemd.
var DefaultCommand = []string{"systemctl", "reboot"}

// Config is the plugin's section of the host config.
type Config struct {
	// Command is the program that reboots the host, as an argument vector
	// (["systemctl", "reboot"] by default; ["shutdown", "-r", "now"] on a
	// host without systemd). It must return once the reboot is under way.
	Command []string `json:"command,omitempty"`
	// BootIDFile is read for the boot id reported before the reboot;
	// default /proc/sys/kernel/random/boot_id.
	BootIDFile string `json:"boot_id_file,omitempty"`
}

// Reboot is the "reboot" plugin.
type Reboot struct {
	cfg Config
}

var _ plugins.Plugin = (*Reboot)(nil)

// New builds the plugin from its config.
func New(raw json.RawMessage) (plugins.Plugin, error) {
	var cfg Config
	if err := plugins.DecodeConfig(Name, raw, &cfg); err != nil {
		return nil, err
	}
	if cfg.Command == nil {
		// A copy: decoding into the default would overwrite it.
		cfg.Command = slices.Clone(DefaultCommand)
	}
	if len(cfg.Command) == 0 || cfg.Command[0] == "" {
		return nil, errors.New("plugin reboot: config: command: want a program and its arguments, such as [systemctl, reboot]")
	}
	if cfg.BootIDFile == "" {
		cfg.BootIDFile = facts.BootIDFile
	}
	return &Reboot{cfg: cfg}, nil
}

// Describe declares the one action.
func (r *Reboot) Describe() plugins.DDL {
	return plugins.DDL{
		Name:        Name,
		Description: "reboot this host",
		Actions: []plugins.Action{
			{Name: "reboot", Description: "reboot this host now (the configured command, systemctl reboot by default)", Timeout: time.Minute,
				Outputs: []plugins.Output{
					{Name: "boot_id", Description: "the boot id before the reboot", Type: plugins.TypeString},
				}},
		},
	}
}

// Run reads the boot id, then runs the reboot command.
func (r *Reboot) Run(ctx context.Context, req *plugins.Request) (*plugins.Result, error) {
	if req.Action != "reboot" {
		return nil, fmt.Errorf("reboot: unknown action %q", req.Action)
	}
	id, err := facts.BootID(r.cfg.BootIDFile)
	if err != nil {
		return nil, fmt.Errorf("reboot: %w", err)
	}
	if _, err := command.Run(ctx, command.Spec{Argv: r.cfg.Command}); err != nil {
		return nil, fmt.Errorf("reboot: %w", err)
	}
	return &plugins.Result{Changed: true, Summary: "rebooting (boot id " + id + ")", Data: map[string]any{"boot_id": id}}, nil
}
