package packages

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/signetbus/signet/internal/command"
)

// apt drives apt-get, apt-cache, apt-mark and dpkg-query.
type apt struct {
	aptConfig string // APT_CONFIG, "" for apt's defaults
	adminDir  string // dpkg-query --admindir, "" for /var/lib/dpkg
	run       runner
}

func (a *apt) name() string                            { return BackendApt }
func (a *apt) checkName(s string) string               { return checkDebName(s) }
func (a *apt) checkVersion(s string) string            { return checkDebVersion(s) }
func (a *apt) sameVersion(installed, want string) bool { return sameDebVersion(installed, want) }

// aptLockWait makes apt-get wait for the dpkg lock (held by
// unattended-upgrades, say) instead of failing at once; the action's
// deadline still bounds the whole run.
const aptLockWait = "DPkg::Lock::Timeout=120"

func (a *apt) env() []string {
	env := []string{
		"DEBIAN_FRONTEND=noninteractive",
		"APT_LISTCHANGES_FRONTEND=none",
		"UCF_FORCE_CONFFOLD=1",
	}
	if a.aptConfig != "" {
		env = append(env, "APT_CONFIG="+a.aptConfig)
	}
	return env
}

func (a *apt) exec(ctx context.Context, log *slog.Logger, argv ...string) (*command.Result, error) {
	log.Debug("run", "argv", argv)
	res, err := a.run(ctx, command.Spec{Argv: argv, ExtraEnv: a.env()})
	if err != nil {
		var ee *command.ExitError
		if errors.As(err, &ee) {
			log.Warn("command failed", "argv", argv, "exit_code", ee.Result.ExitCode, "stdout", tail(ee.Result.Stdout, 2048), "stderr", tail(ee.Result.Stderr, 2048))
		}
	}
	return res, err
}

// queryFormat asks dpkg-query for name, selection (install, hold, ...),
// status (installed, config-files, ...) and version, tab-separated.
const queryFormat = "${Package}\t${db:Status-Want}\t${db:Status-Status}\t${Version}\n"

func (a *apt) queryArgv(pkg string) []string {
	argv := []string{"dpkg-query"}
	if a.adminDir != "" {
		argv = append(argv, "--admindir="+a.adminDir)
	}
	return append(argv, "--show", "--showformat="+queryFormat, "--", pkg)
}

func (a *apt) query(ctx context.Context, log *slog.Logger, pkg string) (state, error) {
	res, err := a.exec(ctx, log, a.queryArgv(pkg)...)
	if err != nil {
		var ee *command.ExitError
		if errors.As(err, &ee) && ee.Result.ExitCode == 1 && strings.Contains(ee.Result.Stderr, "no packages found matching") {
			return state{Status: "not-installed"}, nil
		}
		return state{}, fmt.Errorf("query dpkg database: %w", err)
	}
	return parseDpkgQuery(res.Stdout, pkg)
}

// parseDpkgQuery reads queryFormat lines. A multi-arch package may print
// one line per architecture; an installed one wins.
func parseDpkgQuery(out, pkg string) (state, error) {
	st := state{Status: "not-installed"}
	found := false
	for _, line := range strings.Split(out, "\n") {
		if line == "" {
			continue
		}
		f := strings.Split(line, "\t")
		if len(f) != 4 {
			return state{}, fmt.Errorf("unexpected dpkg-query output: want 4 tab-separated fields, got %q", line)
		}
		name, _, _ := strings.Cut(f[0], ":") // drop a ":arch" qualifier
		if name != pkg {
			continue
		}
		cur := state{Held: f[1] == "hold", Status: f[2], Installed: f[2] == "installed"}
		if cur.Installed {
			cur.Version = f[3]
		}
		if !found || (cur.Installed && !st.Installed) {
			st, found = cur, true
		}
	}
	return st, nil
}

func (a *apt) candidate(ctx context.Context, log *slog.Logger, pkg string) (string, error) {
	res, err := a.exec(ctx, log, "apt-cache", "policy", "--", pkg)
	if err != nil {
		return "", fmt.Errorf("apt-cache policy: %w", err)
	}
	return parseAptPolicy(res.Stdout), nil
}

// parseAptPolicy returns the "Candidate:" of apt-cache policy output, or ""
// when there is none.
func parseAptPolicy(out string) string {
	for _, line := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "Candidate:"); ok {
			v = strings.TrimSpace(v)
			if v == "(none)" {
				return ""
			}
			return v
		}
	}
	return ""
}

// parseAptMadison returns the versions in apt-cache madison output
// ("name | version | source").
func parseAptMadison(out, pkg string) []string {
	var vs []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Split(line, "|")
		if len(f) < 3 || strings.TrimSpace(f[0]) != pkg {
			continue
		}
		vs = append(vs, strings.TrimSpace(f[1]))
	}
	return vs
}

func (a *apt) installArgv(pkg, version string) []string {
	spec := pkg
	if version != "" {
		spec += "=" + version
	}
	return []string{"apt-get", "install", "-y", "-q", "--allow-downgrades",
		"-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold",
		"-o", aptLockWait, "--", spec}
}

func (a *apt) install(ctx context.Context, log *slog.Logger, pkg, version string) error {
	res, err := a.exec(ctx, log, a.installArgv(pkg, version)...)
	return aptError(res, err)
}

func (a *apt) remove(ctx context.Context, log *slog.Logger, pkg string) error {
	res, err := a.exec(ctx, log, "apt-get", "remove", "-y", "-q", "-o", aptLockWait, "--", pkg)
	return aptError(res, err)
}

func (a *apt) refresh(ctx context.Context, log *slog.Logger) error {
	res, err := a.exec(ctx, log, "apt-get", "update", "-q", "-o", aptLockWait)
	if err != nil {
		return aptError(res, err)
	}
	// apt-get update exits 0 when a repository could not be fetched; the
	// old lists stay in use. Make that visible.
	if msgs := aptMessages(res.Stdout+"\n"+res.Stderr, "Err:", "W: Failed to fetch", "E:"); len(msgs) > 0 {
		return fmt.Errorf("apt-get update: some repositories failed: %s", strings.Join(msgs, "; "))
	}
	return nil
}

func (a *apt) mismatchReason(ctx context.Context, log *slog.Logger, pkg, want string, st state) string {
	if st.Held {
		return "apt: held package"
	}
	if st.Installed && sameDebVersion(st.Version, want) {
		return ""
	}
	res, err := a.exec(ctx, log, "apt-cache", "madison", "--", pkg)
	if err != nil {
		return ""
	}
	for _, v := range parseAptMadison(res.Stdout, pkg) {
		if sameDebVersion(v, want) {
			return ""
		}
	}
	return fmt.Sprintf("apt: version %s is not available from the configured repositories; run refresh or check the sources", want)
}

// aptError turns a failed apt-get run into an error that quotes the lines
// saying what went wrong (apt's "E:" lines, dpkg's "dpkg: error" lines and
// the line after each), not just the final "Sub-process returned 1".
func aptError(res *command.Result, err error) error {
	var ee *command.ExitError
	if err == nil || !errors.As(err, &ee) {
		return err
	}
	msgs := aptMessages(res.Stdout+"\n"+res.Stderr, "E:", "dpkg: error", "dpkg: dependency problems")
	if len(msgs) == 0 {
		return err
	}
	return fmt.Errorf("%s exited with status %d: %s", res.Argv[0], res.ExitCode, strings.Join(msgs, "; "))
}

// aptMessages returns the output lines starting with one of prefixes, each
// joined with the indented continuation lines after it.
func aptMessages(out string, prefixes ...string) []string {
	var msgs []string
	lines := strings.Split(out, "\n")
	for i := 0; i < len(lines); i++ {
		line := strings.TrimSpace(lines[i])
		match := false
		for _, p := range prefixes {
			if strings.HasPrefix(line, p) {
				match = true
				break
			}
		}
		if !match {
			continue
		}
		for i+1 < len(lines) && strings.HasPrefix(lines[i+1], " ") && strings.TrimSpace(lines[i+1]) != "" {
			i++
			line += " " + strings.TrimSpace(lines[i])
		}
		msgs = append(msgs, line)
	}
	return msgs
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}
