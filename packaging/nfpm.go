package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/goreleaser/nfpm/v2"
	_ "github.com/goreleaser/nfpm/v2/deb" // registers the deb packager
	_ "github.com/goreleaser/nfpm/v2/rpm" // registers the rpm packager
)

// buildPackage packages name in format by packaging/nfpm/NAME.yaml and
// returns the package's path. The config may use ${VERSION}, ${PKGVERSION}
// (the version as the package carries it, for dependencies), ${ARCH} and
// ${STAGE} (the generated binaries, man pages and completions).
func buildPackage(o *options, stage, name, format string) (string, error) {
	env := map[string]string{"VERSION": o.version, "PKGVERSION": pkgVersion(o.version), "ARCH": o.arch, "STAGE": stage}
	path := filepath.Join("packaging", "nfpm", name+".yaml")
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	// Expanded here, in the whole file, rather than by nfpm, which expands
	// a content's paths only when it says expand: true.
	var unknown []string
	text := os.Expand(string(b), func(k string) string {
		v, ok := env[k]
		if !ok {
			unknown = append(unknown, k)
		}
		return v
	})
	if len(unknown) > 0 {
		return "", fmt.Errorf("%s: unknown variables %v (want VERSION, PKGVERSION, ARCH or STAGE)", path, unknown)
	}
	cfg, err := nfpm.ParseWithEnvMapping(strings.NewReader(text), func(k string) string { return env[k] })
	if err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	if err := cfg.Validate(); err != nil {
		return "", err
	}
	info, err := cfg.Get(format)
	if err != nil {
		return "", err
	}
	info = nfpm.WithDefaults(info)
	pkger, err := nfpm.Get(format)
	if err != nil {
		return "", err
	}
	path = filepath.Join(o.out, pkger.ConventionalFileName(info))
	info.Target = path
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	err = pkger.Package(info, f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return "", fmt.Errorf("package: %w", err)
	}
	return path, nil
}

// pkgVersion is version as nfpm writes it into a .deb or .rpm: a semver
// pre-release ("1.2.0-rc1") sorts before its release there only with a
// tilde ("1.2.0~rc1").
func pkgVersion(version string) string {
	return strings.Replace(version, "-", "~", 1)
}
