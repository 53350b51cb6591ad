// Package packages is signet's "package" plugin: it reports, installs,
// updates to an exact or the newest version, checks and removes one OS
// package per request, and refreshes the package indexes. ("package" is a Go
// keyword, so the Go package is named packages; operators call it
// "package".)
//
// Two backends exist, chosen from the tools found on PATH unless the config
// names one:
//
//   - apt: apt-get, apt-cache and dpkg-query (Debian, Ubuntu)
//   - dnf: dnf and rpm (RHEL, Rocky, Alma, Fedora)
//
// Every name and version is checked against the backend's grammar (Debian
// policy or RPM) before anything runs, and reaches the tools as one argv
// element after "--", never through a shell.
//
// A real host needs no config. Tests point the apt backend at a throwaway
// root with AptConfig (an APT_CONFIG file whose Dir, Dir::State::status and
// DPkg::Options say where) and DpkgAdminDir.
package packages

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	"github.com/signetbus/signet/internal/command"
	"github.com/signetbus/signet/plugins"
)

func init() { plugins.Register(plugins.Info{Name: "package", New: New}) }

// Name is the agent name operators use.
const Name = "package"

// Backend names accepted in Config.Backend.
const (
	BackendApt = "apt"
	BackendDnf = "dnf"
)

// Config is the plugin's section of the host config. Every field is
// optional; on a real Debian or RHEL host leave the section empty.
type Config struct {
	// Backend selects the package manager: "apt" (apt-get, apt-cache,
	// apt-mark and dpkg-query) or "dnf" (dnf and rpm). Empty means detect:
	// apt when apt-get and dpkg-query are on PATH, otherwise dnf when dnf
	// and rpm are.
	Backend string `json:"backend,omitempty"`

	// AptConfig is the absolute path of an apt configuration file, passed
	// to apt-get, apt-cache and apt-mark as the APT_CONFIG environment
	// variable. apt reads it before anything else, so a file that sets
	// Dir "/some/root/"; makes apt read its sources, lists, cache and
	// apt.conf.d under that root instead of /etc/apt and /var. Set
	// Dir::State::status and DPkg::Options { "--root=/some/root"; } as
	// well so that dpkg acts on the same root. Empty means apt's own
	// defaults. apt backend only.
	AptConfig string `json:"apt_config,omitempty"`

	// DpkgAdminDir is the absolute path of the dpkg database directory,
	// passed to dpkg-query as --admindir. It must be the directory of the
	// Dir::State::status file that AptConfig names. Empty means dpkg's
	// default, /var/lib/dpkg. apt backend only.
	DpkgAdminDir string `json:"dpkg_admindir,omitempty"`

	// InstallRoot is the absolute path of an alternative root, passed to
	// dnf as --installroot and to rpm as --root. Empty means /. dnf
	// backend only.
	InstallRoot string `json:"installroot,omitempty"`
}

// Package is the "package" plugin.
type Package struct {
	be backend
	// mu serialises actions: two package transactions on one host would
	// only fight over the package manager's lock.
	mu sync.Mutex
}

var (
	_ plugins.Plugin    = (*Package)(nil)
	_ plugins.Validator = (*Package)(nil)
)

// runner runs one program; command.Run in production, a fake in tests of
// backends that cannot run on the test machine.
type runner func(ctx context.Context, spec command.Spec) (*command.Result, error)

// New builds the plugin from its config (see Config).
func New(config json.RawMessage) (plugins.Plugin, error) {
	return newPackage(config, command.Run, exec.LookPath)
}

func newPackage(config json.RawMessage, run runner, lookPath func(string) (string, error)) (*Package, error) {
	var cfg Config
	if err := plugins.DecodeConfig(Name, config, &cfg); err != nil {
		return nil, err
	}
	for key, p := range map[string]string{"apt_config": cfg.AptConfig, "dpkg_admindir": cfg.DpkgAdminDir, "installroot": cfg.InstallRoot} {
		if p != "" && (!filepath.IsAbs(p) || filepath.Clean(p) != p) {
			return nil, fmt.Errorf("plugin %s: config: %s must be a clean absolute path, got %q", Name, key, p)
		}
	}
	backendName := cfg.Backend
	if backendName == "" {
		backendName = detect(lookPath)
		if backendName == "" {
			return nil, fmt.Errorf("plugin %s: no supported package manager: want apt-get and dpkg-query (apt) or dnf and rpm (dnf) on PATH", Name)
		}
	}
	switch backendName {
	case BackendApt:
		if cfg.InstallRoot != "" {
			return nil, fmt.Errorf("plugin %s: config: installroot is for the dnf backend; for apt use apt_config and dpkg_admindir", Name)
		}
		return &Package{be: &apt{aptConfig: cfg.AptConfig, adminDir: cfg.DpkgAdminDir, run: run}}, nil
	case BackendDnf:
		if cfg.AptConfig != "" || cfg.DpkgAdminDir != "" {
			return nil, fmt.Errorf("plugin %s: config: apt_config and dpkg_admindir are for the apt backend; for dnf use installroot", Name)
		}
		return &Package{be: &dnf{installRoot: cfg.InstallRoot, run: run}}, nil
	}
	return nil, fmt.Errorf("plugin %s: config: backend must be %q or %q, got %q", Name, BackendApt, BackendDnf, backendName)
}

func detect(lookPath func(string) (string, error)) string {
	has := func(names ...string) bool {
		for _, n := range names {
			if _, err := lookPath(n); err != nil {
				return false
			}
		}
		return true
	}
	switch {
	case has("apt-get", "apt-cache", "dpkg-query"):
		return BackendApt
	case has("dnf", "rpm"):
		return BackendDnf
	}
	return ""
}

// backend is one package manager.
type backend interface {
	// name is "apt" or "dnf", used in messages.
	name() string
	// checkName and checkVersion apply the backend's grammar; they return
	// a description of the broken rule, or "" when the value is fine.
	checkName(s string) string
	checkVersion(s string) string
	// sameVersion reports whether an installed version satisfies a wanted one.
	sameVersion(installed, want string) bool
	// query reports the package's installed state.
	query(ctx context.Context, log *slog.Logger, pkg string) (state, error)
	// candidate returns the version the repositories would install, or ""
	// when they offer none.
	candidate(ctx context.Context, log *slog.Logger, pkg string) (string, error)
	// install installs exactly pkg at version, up or down from whatever is installed.
	install(ctx context.Context, log *slog.Logger, pkg, version string) error
	// remove removes pkg.
	remove(ctx context.Context, log *slog.Logger, pkg string) error
	// refresh refreshes the package indexes.
	refresh(ctx context.Context, log *slog.Logger) error
	// mismatchReason explains, when it can, why pkg is not at want:
	// "apt: held package", say. "" when nothing is detected.
	mismatchReason(ctx context.Context, log *slog.Logger, pkg, want string, st state) string
}

// state is a package's installed state.
type state struct {
	Installed bool
	// Version is the installed version, "" when not installed.
	Version string
	// Held reports a hold (dpkg selection "hold", dnf versionlock).
	Held bool
	// Status is the package manager's own word for the state:
	// "installed", "not-installed", "config-files", "unpacked", ...
	Status string
}

// VersionError is returned by check_version when the installed version is
// not the wanted one.
type VersionError struct {
	Package   string
	Want      string
	Installed string // "" when the package is not installed
	// Reason is what the backend detected, such as "apt: held package";
	// "" when nothing was detected.
	Reason string
}

func (e *VersionError) Error() string {
	msg := fmt.Sprintf("package %s: want %s, installed %s", e.Package, e.Want, e.Installed)
	if e.Installed == "" {
		msg = fmt.Sprintf("package %s: want %s, not installed", e.Package, e.Want)
	}
	if e.Reason != "" {
		msg += " (" + e.Reason + ")"
	}
	return msg
}

// ErrNoCandidate is returned when the repositories offer no version of a
// package to install or update to.
var ErrNoCandidate = errors.New("packages: no installable version in the configured repositories")

// Describe returns the plugin's DDL.
func (p *Package) Describe() plugins.DDL {
	pkg := plugins.Input{Name: "package", Description: "package name, such as nginx", Type: plugins.TypeString, Required: true, MaxLength: maxNameLen}
	ver := func(desc string, required bool) plugins.Input {
		return plugins.Input{Name: "version", Description: desc, Type: plugins.TypeString, Required: required, MaxLength: maxVersionLen}
	}
	out := []plugins.Output{
		{Name: "package", Description: "package name", Type: plugins.TypeString},
		{Name: "installed", Description: "whether the package is installed afterwards", Type: plugins.TypeBoolean},
		{Name: "version", Description: "installed version afterwards, empty when not installed", Type: plugins.TypeString},
		{Name: "previous", Description: "installed version before, present when the action changed it (empty: was not installed)", Type: plugins.TypeString},
		{Name: "sha256", Description: "SHA-256 of the file installed, present when the request named one and it matched", Type: plugins.TypeString},
	}
	digest := plugins.Input{Name: "sha256", Description: "SHA-256 of the package file (64 lowercase hex digits): the file is fetched, checked and only then installed; a mismatch is refused before dpkg or rpm runs. Empty: no check", Type: plugins.TypeString, Pattern: sha256Pattern, MaxLength: 64}
	change := 15 * time.Minute
	return plugins.DDL{
		Name:        Name,
		Description: "install, update, check and remove OS packages with " + p.be.name(),
		Actions: []plugins.Action{
			{Name: "status", Description: "report whether a package is installed and at which version", Timeout: time.Minute,
				Inputs: []plugins.Input{pkg},
				Outputs: append(out[:3:3],
					plugins.Output{Name: "held", Description: "whether the package is held at its version", Type: plugins.TypeBoolean},
					plugins.Output{Name: "state", Description: "the package manager's state word, such as installed or config-files", Type: plugins.TypeString})},
			{Name: "install", Description: "install a package, at an exact version when one is given; an installed package without a version asked for is left alone", Timeout: change,
				Inputs: []plugins.Input{pkg, ver("exact version to install; absent: the newest available, or whatever is already installed", false), digest}, Outputs: out},
			{Name: "update", Description: "move a package to an exact version (up or down), or to the newest available; installs it when absent", Timeout: change,
				Inputs: []plugins.Input{pkg, ver("exact version to move to; absent: the newest available", false), digest}, Outputs: out},
			{Name: "remove", Description: "remove a package (configuration files stay)", Timeout: change,
				Inputs: []plugins.Input{pkg}, Outputs: out},
			{Name: "check_version", Description: "succeed only when the package is installed at exactly this version; otherwise fail saying what is installed and, when detectable, why", Timeout: time.Minute,
				Inputs: []plugins.Input{pkg, ver("the version that must be installed", true)}, Outputs: out[:3]},
			{Name: "refresh", Description: "refresh the package indexes from the configured repositories (apt-get update, dnf makecache)", Timeout: 10 * time.Minute},
		},
	}
}

// Validate checks the package name and version against the backend's
// grammar. It runs no program.
func (p *Package) Validate(action string, params plugins.Params) error {
	if action == "refresh" {
		return nil
	}
	if _, ok := p.Describe().Action(action); !ok {
		return fmt.Errorf("package: unknown action %q", action)
	}
	if rule := p.be.checkName(params.String("package")); rule != "" {
		return &plugins.ParamError{Action: action, Param: "package", Rule: "package_name", Msg: rule}
	}
	if d := params.String("sha256"); d != "" && !sha256RE.MatchString(d) {
		return &plugins.ParamError{Action: action, Param: "sha256", Rule: "sha256", Msg: "want 64 lowercase hex digits"}
	}
	if params.Has("version") || action == "check_version" {
		if rule := p.be.checkVersion(params.String("version")); rule != "" {
			return &plugins.ParamError{Action: action, Param: "version", Rule: "version", Msg: rule}
		}
	}
	return nil
}

// Run performs one action.
func (p *Package) Run(ctx context.Context, req *plugins.Request) (*plugins.Result, error) {
	// Validate again: Run must be safe even if a caller skipped Validate.
	if err := p.Validate(req.Action, req.Params); err != nil {
		return nil, err
	}
	log := req.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	name, version, digest := req.Params.String("package"), req.Params.String("version"), req.Params.String("sha256")
	switch req.Action {
	case "status":
		return p.status(ctx, log, name)
	case "install":
		return p.install(ctx, log, name, version, digest)
	case "update":
		return p.update(ctx, log, name, version, digest)
	case "remove":
		return p.remove(ctx, log, name)
	case "check_version":
		return p.checkVersion(ctx, log, name, version)
	case "refresh":
		if err := p.be.refresh(ctx, log); err != nil {
			return nil, fmt.Errorf("refresh package indexes: %w", err)
		}
		return &plugins.Result{Summary: p.be.name() + " package indexes refreshed", Data: map[string]any{"backend": p.be.name()}}, nil
	}
	return nil, fmt.Errorf("package: unknown action %q", req.Action)
}

func data(name string, st state) map[string]any {
	return map[string]any{"package": name, "installed": st.Installed, "version": st.Version}
}

func (p *Package) status(ctx context.Context, log *slog.Logger, name string) (*plugins.Result, error) {
	st, err := p.be.query(ctx, log, name)
	if err != nil {
		return nil, fmt.Errorf("status of %s: %w", name, err)
	}
	d := data(name, st)
	d["held"], d["state"] = st.Held, st.Status
	summary := name + " is not installed"
	if st.Installed {
		summary = fmt.Sprintf("%s %s is installed", name, st.Version)
	}
	return &plugins.Result{Summary: summary, Data: d}, nil
}

func (p *Package) install(ctx context.Context, log *slog.Logger, name, version, digest string) (*plugins.Result, error) {
	before, err := p.be.query(ctx, log, name)
	if err != nil {
		return nil, fmt.Errorf("install %s: %w", name, err)
	}
	if before.Installed && (version == "" || p.be.sameVersion(before.Version, version)) {
		return &plugins.Result{Summary: fmt.Sprintf("%s %s is already installed", name, before.Version), Data: data(name, before)}, nil
	}
	return p.moveTo(ctx, log, "install", name, version, digest, before)
}

func (p *Package) update(ctx context.Context, log *slog.Logger, name, version, digest string) (*plugins.Result, error) {
	before, err := p.be.query(ctx, log, name)
	if err != nil {
		return nil, fmt.Errorf("update %s: %w", name, err)
	}
	if version == "" {
		version, err = p.be.candidate(ctx, log, name)
		if err != nil {
			return nil, fmt.Errorf("update %s: newest version: %w", name, err)
		}
		if version == "" {
			return nil, fmt.Errorf("update %s: %w", name, ErrNoCandidate)
		}
	}
	if before.Installed && p.be.sameVersion(before.Version, version) {
		return &plugins.Result{Summary: fmt.Sprintf("%s is already at %s", name, before.Version), Data: data(name, before)}, nil
	}
	return p.moveTo(ctx, log, "update", name, version, digest, before)
}

// moveTo installs name at version ("" for the newest) and checks that the
// package manager did what it said. With a digest, the artifact is
// fetched and checked first, and that file is installed.
func (p *Package) moveTo(ctx context.Context, log *slog.Logger, action, name, version, digest string, before state) (*plugins.Result, error) {
	if version == "" {
		c, err := p.be.candidate(ctx, log, name)
		if err != nil {
			return nil, fmt.Errorf("%s %s: newest version: %w", action, name, err)
		}
		if c == "" {
			return nil, fmt.Errorf("%s %s: %w", action, name, ErrNoCandidate)
		}
		version = c
	}
	install := p.be.install
	if digest != "" {
		install = func(ctx context.Context, log *slog.Logger, name, version string) error {
			return p.installVerified(ctx, log, name, version, digest)
		}
	}
	if err := install(ctx, log, name, version); err != nil {
		var de *DigestError
		if errors.As(err, &de) {
			return nil, err
		}
		err = fmt.Errorf("%s %s %s: %w", action, name, version, err)
		if st, qerr := p.be.query(ctx, log, name); qerr == nil {
			if reason := p.be.mismatchReason(ctx, log, name, version, st); reason != "" {
				err = fmt.Errorf("%w (%s)", err, reason)
			}
		}
		return nil, err
	}
	after, err := p.be.query(ctx, log, name)
	if err != nil {
		return nil, fmt.Errorf("%s %s: after installing: %w", action, name, err)
	}
	if !after.Installed || !p.be.sameVersion(after.Version, version) {
		return nil, fmt.Errorf("%s %s: %s reported success but %w", action, name, p.be.name(),
			&VersionError{Package: name, Want: version, Installed: after.Version, Reason: p.be.mismatchReason(ctx, log, name, version, after)})
	}
	d := data(name, after)
	d["previous"] = before.Version
	summary := fmt.Sprintf("%s %s installed", name, after.Version)
	if before.Installed {
		summary = fmt.Sprintf("%s %s -> %s", name, before.Version, after.Version)
	}
	if digest != "" {
		d["sha256"] = digest
		summary += " (sha256 verified)"
	}
	log.Info("package changed", "package", name, "previous", before.Version, "version", after.Version)
	return &plugins.Result{Changed: true, Summary: summary, Data: d}, nil
}

func (p *Package) remove(ctx context.Context, log *slog.Logger, name string) (*plugins.Result, error) {
	before, err := p.be.query(ctx, log, name)
	if err != nil {
		return nil, fmt.Errorf("remove %s: %w", name, err)
	}
	if !before.Installed {
		return &plugins.Result{Summary: name + " is not installed", Data: data(name, before)}, nil
	}
	if err := p.be.remove(ctx, log, name); err != nil {
		return nil, fmt.Errorf("remove %s: %w", name, err)
	}
	after, err := p.be.query(ctx, log, name)
	if err != nil {
		return nil, fmt.Errorf("remove %s: after removing: %w", name, err)
	}
	if after.Installed {
		return nil, fmt.Errorf("remove %s: %s reported success but %s %s is still installed", name, p.be.name(), name, after.Version)
	}
	d := data(name, after)
	d["previous"] = before.Version
	log.Info("package removed", "package", name, "previous", before.Version)
	return &plugins.Result{Changed: true, Summary: fmt.Sprintf("%s %s removed", name, before.Version), Data: d}, nil
}

func (p *Package) checkVersion(ctx context.Context, log *slog.Logger, name, want string) (*plugins.Result, error) {
	st, err := p.be.query(ctx, log, name)
	if err != nil {
		return nil, fmt.Errorf("check version of %s: %w", name, err)
	}
	if st.Installed && p.be.sameVersion(st.Version, want) {
		return &plugins.Result{Summary: fmt.Sprintf("%s %s is installed as wanted", name, st.Version), Data: data(name, st)}, nil
	}
	return nil, &VersionError{Package: name, Want: want, Installed: st.Version, Reason: p.be.mismatchReason(ctx, log, name, want, st)}
}
