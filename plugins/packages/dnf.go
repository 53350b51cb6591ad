package packages

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/signetbus/signet/internal/command"
)

// dnf drives dnf (4 or 5) and rpm.
type dnf struct {
	installRoot string // --installroot / rpm --root, "" for /
	run         runner
}

func (d *dnf) name() string                            { return BackendDnf }
func (d *dnf) checkName(s string) string               { return checkRPMName(s) }
func (d *dnf) checkVersion(s string) string            { return checkRPMVersion(s) }
func (d *dnf) sameVersion(installed, want string) bool { return sameRPMVersion(installed, want) }

func (d *dnf) exec(ctx context.Context, log *slog.Logger, argv ...string) (*command.Result, error) {
	log.Debug("run", "argv", argv)
	res, err := d.run(ctx, command.Spec{Argv: argv})
	if err != nil {
		var ee *command.ExitError
		if errors.As(err, &ee) {
			log.Warn("command failed", "argv", argv, "exit_code", ee.Result.ExitCode, "stdout", tail(ee.Result.Stdout, 2048), "stderr", tail(ee.Result.Stderr, 2048))
		}
	}
	return res, err
}

// rpmQueryFormat prints name, epoch (0 when none), version, release and
// arch, tab-separated, one line per installed instance.
const rpmQueryFormat = "%{NAME}\t%{EPOCHNUM}\t%{VERSION}\t%{RELEASE}\t%{ARCH}\n"

// dnfQueryFormat is the same for dnf repoquery (dnf 4 and 5 both know these tags).
const dnfQueryFormat = "%{name}\t%{epoch}\t%{version}\t%{release}\t%{arch}\n"

func (d *dnf) rpmArgv(args ...string) []string {
	argv := []string{"rpm"}
	if d.installRoot != "" {
		argv = append(argv, "--root="+d.installRoot)
	}
	return append(argv, args...)
}

func (d *dnf) dnfArgv(args ...string) []string {
	argv := []string{"dnf", "-y"}
	if d.installRoot != "" {
		argv = append(argv, "--installroot="+d.installRoot)
	}
	return append(argv, args...)
}

func (d *dnf) query(ctx context.Context, log *slog.Logger, pkg string) (state, error) {
	res, err := d.exec(ctx, log, d.rpmArgv("-q", "--queryformat", rpmQueryFormat, "--", pkg)...)
	if err != nil {
		var ee *command.ExitError
		if errors.As(err, &ee) && ee.Result.ExitCode == 1 && strings.Contains(ee.Result.Stdout, "is not installed") {
			return state{Status: "not-installed"}, nil
		}
		return state{}, fmt.Errorf("query rpm database: %w", err)
	}
	nevras, err := parseNEVRA(res.Stdout, pkg)
	if err != nil {
		return state{}, fmt.Errorf("rpm -q: %w", err)
	}
	if len(nevras) == 0 {
		return state{Status: "not-installed"}, nil
	}
	// Install-only packages (kernels) can be installed at several
	// versions; rpm lists them oldest first, so report the last.
	st := state{Installed: true, Status: "installed", Version: nevras[len(nevras)-1].evr()}
	st.Held = d.locked(ctx, log, pkg)
	return st, nil
}

type nevra struct{ name, epoch, version, release, arch string }

// evr prints [epoch:]version-release, without a zero epoch, the way
// dnf accepts it back in name-evr.
func (n nevra) evr() string {
	s := n.version + "-" + n.release
	if n.epoch != "" && n.epoch != "0" && n.epoch != "(none)" {
		s = n.epoch + ":" + s
	}
	return s
}

// parseNEVRA reads rpmQueryFormat or dnfQueryFormat lines for pkg.
func parseNEVRA(out, pkg string) ([]nevra, error) {
	var ns []nevra
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		f := strings.Split(line, "\t")
		if len(f) != 5 {
			return nil, fmt.Errorf("unexpected output: want 5 tab-separated fields, got %q", line)
		}
		if f[0] != pkg {
			continue
		}
		ns = append(ns, nevra{name: f[0], epoch: f[1], version: f[2], release: f[3], arch: f[4]})
	}
	return ns, nil
}

func (d *dnf) candidate(ctx context.Context, log *slog.Logger, pkg string) (string, error) {
	res, err := d.exec(ctx, log, d.dnfArgv("-q", "repoquery", "--latest-limit=1", "--queryformat", dnfQueryFormat, "--", pkg)...)
	if err != nil {
		return "", fmt.Errorf("dnf repoquery: %w", dnfError(res, err))
	}
	ns, err := parseNEVRA(res.Stdout, pkg)
	if err != nil {
		return "", fmt.Errorf("dnf repoquery: %w", err)
	}
	if len(ns) == 0 {
		return "", nil
	}
	// --latest-limit=1 keeps one per architecture; prefer a noarch or
	// native one over a multilib (i686) build.
	best := ns[0]
	for _, n := range ns {
		if n.arch != "i686" {
			best = n
			break
		}
	}
	return best.evr(), nil
}

func (d *dnf) available(ctx context.Context, log *slog.Logger, pkg string) ([]string, error) {
	res, err := d.exec(ctx, log, d.dnfArgv("-q", "repoquery", "--queryformat", dnfQueryFormat, "--", pkg)...)
	if err != nil {
		return nil, dnfError(res, err)
	}
	ns, err := parseNEVRA(res.Stdout, pkg)
	if err != nil {
		return nil, err
	}
	vs := make([]string, len(ns))
	for i, n := range ns {
		vs[i] = n.evr()
	}
	return vs, nil
}

func (d *dnf) installArgv(pkg, version string) []string {
	spec := pkg
	if version != "" {
		// dnf installs an exact name-[epoch:]version[-release] "no
		// matter which version is already installed", up or down.
		spec += "-" + version
	}
	return d.dnfArgv("install", "--", spec)
}

func (d *dnf) install(ctx context.Context, log *slog.Logger, pkg, version string) error {
	res, err := d.exec(ctx, log, d.installArgv(pkg, version)...)
	return dnfError(res, err)
}

func (d *dnf) remove(ctx context.Context, log *slog.Logger, pkg string) error {
	res, err := d.exec(ctx, log, d.dnfArgv("remove", "--", pkg)...)
	return dnfError(res, err)
}

func (d *dnf) refresh(ctx context.Context, log *slog.Logger) error {
	res, err := d.exec(ctx, log, d.dnfArgv("makecache")...)
	return dnfError(res, err)
}

// locked reports whether the versionlock plugin pins pkg. Without the
// plugin the command fails and the answer is no.
func (d *dnf) locked(ctx context.Context, log *slog.Logger, pkg string) bool {
	res, err := d.exec(ctx, log, d.dnfArgv("-q", "versionlock", "list")...)
	if err != nil {
		return false
	}
	return parseVersionlock(res.Stdout, pkg)
}

// parseVersionlock finds pkg in `dnf versionlock list` output: dnf 4
// prints one "name-epoch:version-release.*" pattern a line (with a '!'
// before excluded ones), dnf 5 prints "Package name: name" blocks.
func parseVersionlock(out, pkg string) bool {
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		if n, ok := strings.CutPrefix(line, "Package name:"); ok {
			if strings.TrimSpace(n) == pkg {
				return true
			}
			continue
		}
		if strings.HasPrefix(line, "#") || strings.HasPrefix(line, "!") {
			continue
		}
		rest, ok := strings.CutPrefix(line, pkg+"-")
		if !ok {
			continue
		}
		// The rest must be an EVR, not the tail of a longer name such as
		// pkg-devel-0:1.0-1.*.
		if i := strings.IndexByte(rest, ':'); i > 0 && strings.Trim(rest[:i], "0123456789") == "" {
			return true
		}
	}
	return false
}

func (d *dnf) mismatchReason(ctx context.Context, log *slog.Logger, pkg, want string, st state) string {
	if st.Held {
		return "dnf: versionlock pins the package"
	}
	if st.Installed && sameRPMVersion(st.Version, want) {
		return ""
	}
	vs, err := d.available(ctx, log, pkg)
	if err != nil {
		return ""
	}
	for _, v := range vs {
		if sameRPMVersion(v, want) {
			return ""
		}
	}
	return fmt.Sprintf("dnf: version %s is not available from the enabled repositories; run refresh or check the repositories", want)
}

// dnfError quotes dnf's own "Error:" / "No match for argument" lines.
func dnfError(res *command.Result, err error) error {
	var ee *command.ExitError
	if err == nil || !errors.As(err, &ee) {
		return err
	}
	msgs := aptMessages(res.Stdout+"\n"+res.Stderr, "Error:", "No match for argument", "Problem:", "error:")
	if len(msgs) == 0 {
		return err
	}
	return fmt.Errorf("%s exited with status %d: %s", res.Argv[0], res.ExitCode, strings.Join(msgs, "; "))
}
