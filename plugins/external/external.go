// Package external lets a site add allow-listed actions without
// recompiling signetd: a directory holds, per plugin, a declaration
// NAME.json (a plugins.DDL) and an executable NAME beside it. Each becomes
// an agent named NAME, validated against its declaration like any built-in
// plugin, and run through internal/command: argv [path, action], a clean
// environment, the action's deadline and bounded output.
//
// # Trust
//
// An external plugin runs as signetd's user, so its files must be as hard
// to change as signetd itself. Load refuses a plugin unless the directory,
// the declaration and the executable are owned by root and not writable by
// group or others, and are not symbolic links. Every directory above them
// must be owned by root and not writable by group or others, unless it has
// the sticky bit (as /tmp does). The executable is checked again before
// every run. An external plugin may not take the name of a built-in one
// (nor "rpcutil", which every host has).
//
// # Protocol
//
// signetd writes one JSON object to the program's stdin:
//
//	{"action": "restore", "params": {"backup": "2024-05-01"},
//	 "identity": "db-dr-1", "caller": "alice", "request_id": "..."}
//
// and reads one JSON object from its stdout:
//
//	{"changed": true, "summary": "restored 2024-05-01", "data": {...}, "error": ""}
//
// A non-empty "error", a non-zero exit status, output that is not exactly
// one such object, or output larger than the bound fails the action with
// the program's message. stderr is kept for the error message only.
package external

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/signetbus/signet/internal/command"
	"github.com/signetbus/signet/internal/grammar"
	"github.com/signetbus/signet/plugins"
)

// Options tune Load.
type Options struct {
	// MaxOutput bounds stdout and stderr of each run, in bytes. Zero
	// means DefaultMaxOutput.
	MaxOutput int
}

// DefaultMaxOutput bounds a plugin's stdout and stderr when Options set no
// bound.
const DefaultMaxOutput = 1 << 20

// maxDeclaration bounds a NAME.json file.
const maxDeclaration = 1 << 20

// Plugin is one external plugin.
type Plugin struct {
	name      string
	path      string
	ddl       plugins.DDL
	maxOutput int
}

var _ plugins.Plugin = (*Plugin)(nil)

// Load reads every declaration in dir and returns one plugins.Plugin per
// external plugin. Files (the dir, the JSON and the executable) must be
// owned by root (uid 0) and not writable by group or others, or the plugin
// is refused with a clear error naming the file and its mode/owner.
// Symlinks are refused.
//
// Load returns the plugins it accepted together with an error joining
// every refusal. A caller may log the error and run with the rest, or treat
// it as fatal. A directory that cannot be trusted or read is an error with
// no plugins.
func Load(dir string, opts Options) (map[string]plugins.Plugin, error) {
	if !filepath.IsAbs(dir) {
		return nil, fmt.Errorf("external: dir %q: want an absolute path", dir)
	}
	dir = filepath.Clean(dir)
	if err := checkAncestors(dir); err != nil {
		return nil, err
	}
	if err := checkOwned(dir, true); err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("external: %w", err)
	}
	max := opts.MaxOutput
	if max <= 0 {
		max = DefaultMaxOutput
	}
	out := map[string]plugins.Plugin{}
	var errs []error
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok {
			continue
		}
		p, err := loadOne(dir, name, max)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out[name] = p
	}
	return out, errors.Join(errs...)
}

func loadOne(dir, name string, maxOutput int) (*Plugin, error) {
	declPath := filepath.Join(dir, name+".json")
	if err := grammar.CheckName("plugin", name); err != nil {
		hint := ""
		if s := strings.ReplaceAll(name, "-", "_"); s != name && grammar.CheckName("plugin", s) == nil {
			hint = fmt.Sprintf(" (rename it %s)", s)
		}
		return nil, fmt.Errorf("external: %s: %w%s", declPath, err, hint)
	}
	if _, builtin := plugins.Lookup(name); builtin || name == "rpcutil" {
		return nil, fmt.Errorf("external: %s: %q is the name of a built-in plugin; choose another name", declPath, name)
	}
	if err := checkOwned(declPath, false); err != nil {
		return nil, err
	}
	exe := filepath.Join(dir, name)
	if err := checkExecutable(exe); err != nil {
		return nil, err
	}
	data, err := readLimited(declPath, maxDeclaration)
	if err != nil {
		return nil, err
	}
	ddl, err := ParseDeclaration(data)
	if err != nil {
		return nil, fmt.Errorf("external: %s: %w", declPath, err)
	}
	if ddl.Name != name {
		return nil, fmt.Errorf("external: %s: declares name %q, want %q (the file name)", declPath, ddl.Name, name)
	}
	return &Plugin{name: name, path: exe, ddl: ddl, maxOutput: maxOutput}, nil
}

// ParseDeclaration decodes a NAME.json declaration strictly and checks it:
// names, input types and patterns, defaults, no duplicates. An action's
// "timeout" may be a Go duration string ("10m") or nanoseconds.
func ParseDeclaration(data []byte) (plugins.DDL, error) {
	var ddl plugins.DDL
	// Turn duration strings into nanoseconds, which is what
	// plugins.Action's time.Duration decodes from.
	var raw map[string]any
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&raw); err != nil {
		return ddl, fmt.Errorf("declaration is not a JSON object: %w", err)
	}
	if dec.More() {
		return ddl, errors.New("declaration: trailing data after the JSON object")
	}
	if actions, ok := raw["actions"].([]any); ok {
		for i, a := range actions {
			obj, ok := a.(map[string]any)
			if !ok {
				continue
			}
			if s, ok := obj["timeout"].(string); ok {
				d, err := time.ParseDuration(s)
				if err != nil || d <= 0 {
					return ddl, fmt.Errorf("action %d: timeout %q: want a positive duration such as 90s or 10m", i+1, s)
				}
				obj["timeout"] = int64(d)
			}
		}
	}
	norm, err := json.Marshal(raw)
	if err != nil {
		return ddl, err
	}
	strict := json.NewDecoder(bytes.NewReader(norm))
	strict.DisallowUnknownFields()
	if err := strict.Decode(&ddl); err != nil {
		return ddl, fmt.Errorf("declaration: %w", err)
	}
	return ddl, checkDDL(ddl)
}

func checkDDL(ddl plugins.DDL) error {
	if ddl.Description == "" {
		return errors.New(`declaration: "description" is empty: say what the plugin is for`)
	}
	if len(ddl.Actions) == 0 {
		return errors.New(`declaration: "actions" is empty: declare at least one action`)
	}
	seen := map[string]bool{}
	for _, a := range ddl.Actions {
		if err := grammar.CheckName("action", a.Name); err != nil {
			return fmt.Errorf("declaration: %w", err)
		}
		if seen[a.Name] {
			return fmt.Errorf("action %q declared twice", a.Name)
		}
		seen[a.Name] = true
		if a.Timeout < 0 {
			return fmt.Errorf("action %s: negative timeout", a.Name)
		}
		inputs := map[string]bool{}
		for _, in := range a.Inputs {
			if err := grammar.CheckName("input", in.Name); err != nil {
				return fmt.Errorf("action %s: %w", a.Name, err)
			}
			if inputs[in.Name] {
				return fmt.Errorf("action %s: input %q declared twice", a.Name, in.Name)
			}
			inputs[in.Name] = true
			switch in.Type {
			case plugins.TypeString, plugins.TypeInteger, plugins.TypeNumber, plugins.TypeBoolean, plugins.TypeDuration:
			default:
				return fmt.Errorf("action %s: input %s: type %q: want string, integer, number, boolean or duration", a.Name, in.Name, in.Type)
			}
			if in.Pattern != "" {
				if _, err := regexp.Compile(in.Pattern); err != nil {
					return fmt.Errorf("action %s: input %s: pattern: %w", a.Name, in.Name, err)
				}
			}
			if in.Default != nil {
				probe := in
				probe.Required = false
				if _, err := (plugins.Action{Name: a.Name, Inputs: []plugins.Input{probe}}).Validate(nil); err != nil {
					return fmt.Errorf("action %s: input %s: default: %w", a.Name, in.Name, err)
				}
			}
		}
	}
	// Whatever the loader accepts, the host's own check must accept too.
	return ddl.Check()
}

// Describe returns the plugin's declaration.
func (p *Plugin) Describe() plugins.DDL { return p.ddl }

// request is what the program reads on stdin.
type request struct {
	Action    string         `json:"action"`
	Params    map[string]any `json:"params"`
	Identity  string         `json:"identity"`
	Caller    string         `json:"caller"`
	RequestID string         `json:"request_id"`
}

// Run runs the program for one action.
func (p *Plugin) Run(ctx context.Context, req *plugins.Request) (*plugins.Result, error) {
	if _, ok := p.ddl.Action(req.Action); !ok {
		return nil, fmt.Errorf("external plugin %s: unknown action %q (declared: %s)", p.name, req.Action, strings.Join(p.ddl.ActionNames(), ", "))
	}
	// The file may have changed since Load; only root could have changed
	// it, but a changed mode or owner is still refused.
	if err := checkExecutable(p.path); err != nil {
		return nil, err
	}
	params := map[string]any(req.Params)
	if params == nil {
		params = map[string]any{}
	}
	stdin, err := json.Marshal(request{
		Action: req.Action, Params: params,
		Identity: req.Identity, Caller: req.Caller, RequestID: req.RequestID,
	})
	if err != nil {
		return nil, fmt.Errorf("external plugin %s: encode request: %w", p.name, err)
	}
	res, err := command.Run(ctx, command.Spec{
		Argv:      []string{p.path, req.Action},
		Stdin:     stdin,
		MaxOutput: p.maxOutput,
	})
	what := fmt.Sprintf("external plugin %s %s", p.name, req.Action)
	if res != nil && req.Log != nil && res.Stderr != "" {
		req.Log.Debug("external plugin stderr", "stderr", res.Stderr)
	}
	var exit *command.ExitError
	switch {
	case errors.As(err, &exit):
		// Prefer the program's own "error" when it wrote one.
		if resp, perr := ParseResponse([]byte(res.Stdout)); perr == nil && resp.Error != "" {
			return nil, fmt.Errorf("%s: exited with status %d: %s", what, res.ExitCode, resp.Error)
		}
		return nil, fmt.Errorf("%s: %w", what, err)
	case err != nil:
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if res.Truncated {
		return nil, fmt.Errorf("%s: output exceeds %d bytes", what, p.maxOutput)
	}
	resp, err := ParseResponse([]byte(res.Stdout))
	if err != nil {
		return nil, fmt.Errorf("%s: %w (stdout began %q)", what, err, truncate(res.Stdout, 80))
	}
	if resp.Error != "" {
		return nil, fmt.Errorf("%s: %s", what, resp.Error)
	}
	return &plugins.Result{Changed: resp.Changed, Summary: resp.Summary, Data: resp.Data}, nil
}

// Response is what a program writes on stdout.
type Response struct {
	Changed bool           `json:"changed"`
	Summary string         `json:"summary,omitempty"`
	Data    map[string]any `json:"data,omitempty"`
	Error   string         `json:"error,omitempty"`
}

// ParseResponse decodes a program's stdout strictly: exactly one JSON
// object whose keys are among changed, summary, data and error, spelt
// exactly so and each at most once. An empty data object is the same as
// none.
func ParseResponse(stdout []byte) (*Response, error) {
	trimmed := bytes.TrimSpace(stdout)
	if len(trimmed) == 0 {
		return nil, errors.New(`invalid response: empty output, want a JSON object such as {"changed": false, "summary": "..."}`)
	}
	if trimmed[0] != '{' {
		return nil, errors.New("invalid response: want a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	if _, err := dec.Token(); err != nil { // the opening brace
		return nil, fmt.Errorf("invalid response: %w", err)
	}
	var r Response
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("invalid response: %w", err)
		}
		key, _ := tok.(string)
		if seen[key] {
			return nil, fmt.Errorf("invalid response: key %q appears twice", key)
		}
		seen[key] = true
		var dst any
		switch key {
		case "changed":
			dst = &r.Changed
		case "summary":
			dst = &r.Summary
		case "data":
			dst = &r.Data
		case "error":
			dst = &r.Error
		default:
			return nil, fmt.Errorf("invalid response: unknown key %q (want changed, summary, data, error)", key)
		}
		if err := dec.Decode(dst); err != nil {
			return nil, fmt.Errorf("invalid response: %s: %w", key, err)
		}
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		if errors.Is(err, io.EOF) {
			return nil, errors.New("invalid response: truncated JSON object")
		}
		return nil, fmt.Errorf("invalid response: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("invalid response: trailing data after the JSON object")
	}
	if len(r.Data) == 0 {
		r.Data = nil
	}
	return &r, nil
}

// checkAncestors checks every directory above dir: not a symlink, owned by
// root, and not writable by group or others unless sticky.
func checkAncestors(dir string) error {
	for p := filepath.Dir(dir); ; p = filepath.Dir(p) {
		fi, err := os.Lstat(p)
		if err != nil {
			return fmt.Errorf("external: %w", err)
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			return fmt.Errorf("external: %s is a symbolic link; refusing plugins below it", p)
		}
		uid, err := owner(fi)
		if err != nil {
			return fmt.Errorf("external: %s: %w", p, err)
		}
		if uid != 0 {
			return fmt.Errorf("external: %s is owned by uid %d, want root; refusing plugins below it", p, uid)
		}
		if fi.Mode().Perm()&0o022 != 0 && fi.Mode()&fs.ModeSticky == 0 {
			return fmt.Errorf("external: %s has mode %s: writable by group or others without the sticky bit; refusing plugins below it", p, fi.Mode())
		}
		if p == filepath.Dir(p) {
			return nil
		}
	}
}

// checkOwned checks that path is a directory (or a regular file), not a
// symlink, owned by root and not writable by group or others.
func checkOwned(path string, dir bool) error {
	fi, err := os.Lstat(path)
	if err != nil {
		return fmt.Errorf("external: %w", err)
	}
	return checkInfo(path, fi, dir)
}

func checkInfo(path string, fi fs.FileInfo, dir bool) error {
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		return fmt.Errorf("external: %s is a symbolic link; refused", path)
	case dir && !fi.IsDir():
		return fmt.Errorf("external: %s is not a directory (%s)", path, fi.Mode())
	case !dir && !fi.Mode().IsRegular():
		return fmt.Errorf("external: %s is not a regular file (%s)", path, fi.Mode())
	}
	uid, err := owner(fi)
	if err != nil {
		return fmt.Errorf("external: %s: %w", path, err)
	}
	if uid != 0 {
		return fmt.Errorf("external: %s is owned by uid %d, want root (uid 0); refused\nhint: chown root:root %s", path, uid, path)
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("external: %s has mode %04o: writable by group or others; refused\nhint: chmod go-w %s", path, fi.Mode().Perm(), path)
	}
	return nil
}

func checkExecutable(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("external: %s.json has no executable %s beside it", path, path)
	}
	if err != nil {
		return fmt.Errorf("external: %w", err)
	}
	if err := checkInfo(path, fi, false); err != nil {
		return err
	}
	if fi.Mode().Perm()&0o100 == 0 {
		return fmt.Errorf("external: %s has mode %04o: not executable by its owner\nhint: chmod 755 %s", path, fi.Mode().Perm(), path)
	}
	return nil
}

func owner(fi fs.FileInfo) (uint32, error) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, errors.New("cannot read the file owner on this system")
	}
	return st.Uid, nil
}

func readLimited(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("external: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fmt.Errorf("external: read %s: %w", path, err)
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("external: %s is larger than %d bytes", path, max)
	}
	return data, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
