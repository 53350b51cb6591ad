package packages

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/signetbus/signet/internal/command"
	"github.com/signetbus/signet/internal/lazyre"
)

// sha256Pattern is the DDL pattern of the sha256 input: 64 lowercase hex
// digits, or empty for no check.
const sha256Pattern = `^([0-9a-f]{64})?$`

var sha256RE = lazyre.New(sha256Pattern)

// DigestError is returned by install and update when the artifact the
// package manager fetched does not have the SHA-256 the signed request
// names: nothing was installed.
type DigestError struct {
	Package, Version string
	// File is the artifact's file name ("demo_1.1_all.deb").
	File string
	// Want is the digest the request names, Got the file's.
	Want, Got string
}

func (e *DigestError) Error() string {
	return fmt.Sprintf("package %s: %s has sha256 %s, expected %s: refused before installing, nothing was changed", e.Package, e.File, e.Got, e.Want)
}

// artifact is what a backend does to install a checked file: fetch the
// package's artifact at an exact version into a directory (without
// installing it), say which package and version the file holds, and
// install exactly that file.
type artifact interface {
	// fetch downloads pkg at version into dir and returns the file's path.
	fetch(ctx context.Context, log *slog.Logger, pkg, version, dir string) (string, error)
	// identify returns the package name and version the file holds.
	identify(ctx context.Context, log *slog.Logger, path string) (name, version string, err error)
	// installFile installs the file, up or down from the installed version.
	installFile(ctx context.Context, log *slog.Logger, path string) error
}

var (
	_ artifact = (*apt)(nil)
	_ artifact = (*dnf)(nil)
)

// installVerified fetches pkg at version, checks the file's SHA-256
// against want and that it holds pkg at version, and only then installs
// that very file. A mismatch is a *DigestError and dpkg or rpm never runs.
func (p *Package) installVerified(ctx context.Context, log *slog.Logger, pkg, version, want string) error {
	be, ok := p.be.(artifact)
	if !ok {
		return fmt.Errorf("%s backend cannot check an artifact's sha256", p.be.name())
	}
	dir, err := os.MkdirTemp("", "signet-package-")
	if err != nil {
		return fmt.Errorf("artifact directory: %w", err)
	}
	defer os.RemoveAll(dir)
	// apt downloads as its sandbox user (_apt) where it can write, and
	// falls back to root with a warning where it cannot.
	if err := os.Chmod(dir, 0o755); err != nil {
		return fmt.Errorf("artifact directory: %w", err)
	}
	path, err := be.fetch(ctx, log, pkg, version, dir)
	if err != nil {
		return fmt.Errorf("fetch %s %s: %w", pkg, version, err)
	}
	got, err := fileSHA256(path)
	if err != nil {
		return fmt.Errorf("fetch %s %s: %w", pkg, version, err)
	}
	if got != want {
		log.Warn("artifact digest mismatch: not installed", "package", pkg, "version", version, "file", filepath.Base(path), "want", want, "got", got)
		return &DigestError{Package: pkg, Version: version, File: filepath.Base(path), Want: want, Got: got}
	}
	name, v, err := be.identify(ctx, log, path)
	if err != nil {
		return fmt.Errorf("read %s: %w", filepath.Base(path), err)
	}
	if name != pkg || !p.be.sameVersion(v, version) {
		return fmt.Errorf("%s holds %s %s, want %s %s: not installed", filepath.Base(path), name, v, pkg, version)
	}
	log.Info("artifact digest verified", "package", pkg, "version", version, "file", filepath.Base(path), "sha256", got)
	return be.installFile(ctx, log, path)
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// onlyFile returns the one file with suffix ext in dir.
func onlyFile(dir, ext string) (string, error) {
	m, err := filepath.Glob(filepath.Join(dir, "*"+ext))
	if err != nil {
		return "", err
	}
	if len(m) != 1 {
		return "", fmt.Errorf("want one %s file after the download, found %d", ext, len(m))
	}
	return m[0], nil
}

// fetch runs apt-get download in dir: the package's .deb from the
// configured repositories, checked by apt against the signed index.
func (a *apt) fetch(ctx context.Context, log *slog.Logger, pkg, version, dir string) (string, error) {
	argv := []string{"apt-get", "download", "-q", "-o", aptLockWait, "--", pkg + "=" + version}
	log.Debug("run", "argv", argv, "dir", dir)
	res, err := a.run(ctx, command.Spec{Argv: argv, ExtraEnv: a.env(), Dir: dir})
	if err != nil {
		return "", aptError(res, err)
	}
	return onlyFile(dir, ".deb")
}

func (a *apt) identify(ctx context.Context, log *slog.Logger, path string) (string, string, error) {
	res, err := a.exec(ctx, log, "dpkg-deb", "--show", "--showformat=${Package}\t${Version}\n", path)
	if err != nil {
		return "", "", err
	}
	name, version, ok := strings.Cut(strings.TrimSpace(res.Stdout), "\t")
	if !ok {
		return "", "", fmt.Errorf("unexpected dpkg-deb output %q", res.Stdout)
	}
	return name, version, nil
}

// installFile installs the checked .deb through apt-get, which resolves
// its dependencies from the repositories; the path is absolute, so apt
// takes it as a file and not as a package name.
func (a *apt) installFile(ctx context.Context, log *slog.Logger, path string) error {
	res, err := a.exec(ctx, log, "apt-get", "install", "-y", "-q", "--allow-downgrades",
		"-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold",
		"-o", aptLockWait, "--", path)
	return aptError(res, err)
}

// fetch runs dnf download into dir.
func (d *dnf) fetch(ctx context.Context, log *slog.Logger, pkg, version, dir string) (string, error) {
	res, err := d.exec(ctx, log, d.dnfArgv("download", "--destdir="+dir, "--", pkg+"-"+version)...)
	if err != nil {
		return "", dnfError(res, err)
	}
	return onlyFile(dir, ".rpm")
}

func (d *dnf) identify(ctx context.Context, log *slog.Logger, path string) (string, string, error) {
	res, err := d.exec(ctx, log, "rpm", "-qp", "--queryformat", "%{NAME}\t%{EPOCHNUM}\t%{VERSION}\t%{RELEASE}\n", "--", path)
	if err != nil {
		return "", "", err
	}
	f := strings.Split(strings.TrimSpace(res.Stdout), "\t")
	if len(f) != 4 {
		return "", "", fmt.Errorf("unexpected rpm output %q", res.Stdout)
	}
	v := f[2] + "-" + f[3]
	if f[1] != "0" && f[1] != "" {
		v = f[1] + ":" + v
	}
	return f[0], v, nil
}

func (d *dnf) installFile(ctx context.Context, log *slog.Logger, path string) error {
	res, err := d.exec(ctx, log, d.dnfArgv("install", "--", path)...)
	return dnfError(res, err)
}
