package stage

import (
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/signetbus/signet/internal/command"
	"github.com/signetbus/signet/plugins"
	"github.com/signetbus/signet/plugins/packages"
)

// breakDir is where, under a host's dpkg root, BreakPackage leaves the
// markers the packages' preinst checks ($DPKG_ROOT/etc/signet-stage).
const breakDir = "etc/signet-stage"

// preinst refuses to install the package on a host where the stage broke
// this version. dpkg exports DPKG_ROOT (the --root of the host's apt
// config) to maintainer scripts, so one .deb serves every host.
const preinst = `#!/bin/sh
# written by signet stage: Stage.BreakPackage leaves a marker that makes
# this version fail to install on one host
marker="${DPKG_ROOT}/etc/signet-stage/break-%[1]s-%[2]s"
if [ -e "$marker" ]; then
	echo "%[1]s %[2]s: preinst refused to install (signet stage BreakPackage)" >&2
	exit 1
fi
exit 0
`

// buildRepo builds APP_VERSION_all.deb for each version with dpkg-deb into
// a flat apt repository at dir (Packages index included). Each package
// holds /opt/APP/VERSION, which the app serves.
func buildRepo(ctx context.Context, dir, app string, versions []string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var stanzas []string
	for _, v := range versions {
		src := filepath.Join(dir, "src", app+"-"+v)
		for _, d := range []string{"DEBIAN", filepath.Join("opt", app)} {
			if err := os.MkdirAll(filepath.Join(src, d), 0o755); err != nil {
				return err
			}
		}
		control := fmt.Sprintf("Package: %s\nVersion: %s\nArchitecture: all\nMaintainer: signet stage <stage@example.invalid>\nDescription: signet demo app\n", app, v)
		files := []struct {
			path, content string
			mode          os.FileMode
		}{
			{"DEBIAN/control", control, 0o644},
			{"DEBIAN/preinst", fmt.Sprintf(preinst, app, v), 0o755},
			{filepath.Join("opt", app, "VERSION"), v + "\n", 0o644},
		}
		for _, f := range files {
			if err := os.WriteFile(filepath.Join(src, f.path), []byte(f.content), f.mode); err != nil {
				return err
			}
		}
		file := fmt.Sprintf("%s_%s_all.deb", app, v)
		if _, err := command.Run(ctx, command.Spec{Argv: []string{"dpkg-deb", "--root-owner-group", "--build", src, filepath.Join(dir, file)}}); err != nil {
			return fmt.Errorf("build %s: %w", file, err)
		}
		b, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil {
			return err
		}
		md, sh := md5.Sum(b), sha256.Sum256(b)
		stanzas = append(stanzas, fmt.Sprintf("%sFilename: ./%s\nSize: %d\nMD5sum: %s\nSHA256: %s\n",
			control, file, len(b), hex.EncodeToString(md[:]), hex.EncodeToString(sh[:])))
	}
	return os.WriteFile(filepath.Join(dir, "Packages"), []byte(strings.Join(stanzas, "\n")), 0o644)
}

// aptRoot makes a throwaway Debian root for one host under root: a dpkg
// database, apt state and config, sources pointing at repo. It returns the
// package plugin's config for it (apt_config and dpkg_admindir), so the
// real plugin acts on that root and never on the machine's own.
func aptRoot(root, repo string) (json.RawMessage, error) {
	for _, d := range []string{
		"etc/apt/apt.conf.d", "etc/apt/preferences.d", "etc/apt/sources.list.d",
		"var/lib/dpkg/info", "var/lib/dpkg/updates", "var/lib/apt/lists/partial",
		"var/cache/apt/archives/partial", "var/log/apt", breakDir,
	} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return nil, err
		}
	}
	write := func(rel, content string) error {
		return os.WriteFile(filepath.Join(root, rel), []byte(content), 0o644)
	}
	if err := write("var/lib/dpkg/status", ""); err != nil {
		return nil, err
	}
	if err := write("etc/apt/sources.list", fmt.Sprintf("deb [trusted=yes] file:%s ./\n", repo)); err != nil {
		return nil, err
	}
	// Dir moves every apt path under the root, apt.conf.d included, so the
	// machine's apt configuration is not read. dpkg gets --root and runs
	// maintainer scripts without chroot (the root holds no /bin/sh).
	conf := filepath.Join(root, "apt.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(`Dir "%[1]s/";
Dir::State::status "%[1]s/var/lib/dpkg/status";
Dir::Bin::dpkg "/usr/bin/dpkg";
DPkg::Options { "--root=%[1]s"; "--force-script-chrootless"; };
APT::Sandbox::User "root";
`, root)), 0o644); err != nil {
		return nil, err
	}
	return json.Marshal(packages.Config{Backend: packages.BackendApt, AptConfig: conf, DpkgAdminDir: filepath.Join(root, "var/lib/dpkg")})
}

// runAction runs one plugin action the way signetd does: DDL validation,
// the plugin's Validator, then Run.
func runAction(ctx context.Context, p plugins.Plugin, req *plugins.Request, raw map[string]any) (*plugins.Result, error) {
	params, err := plugins.Prepare(p, req.Action, raw)
	if err != nil {
		return nil, err
	}
	req.Params = params
	return p.Run(ctx, req)
}
