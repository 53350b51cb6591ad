// Command packaging builds signet's .deb and .rpm packages with nfpm, from
// the repository root:
//
//	go run ./packaging -version 1.2.3
//
// It builds signet and signetd for Linux with the version and commit set
// through -ldflags (internal/version), generates their man pages and shell
// completions from the cobra commands, and packages them by the nfpm
// configs in packaging/nfpm: signetd (the host daemon), signet (the
// operator CLI) and signet-broker (a unit that runs `signet broker`). The
// packages land in -out (default dist/).
//
// nfpm is used as a library rather than as a `go tool`: its packagers pull
// about a third fewer modules into go.mod than its command line does, and
// the same program generates the man pages from the command trees it
// links anyway.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
)

// options are the command line.
type options struct {
	version  string
	commit   string
	arch     string
	out      string
	formats  []string
	packages []string
}

// allPackages are the nfpm configs in packaging/nfpm, by package name.
var allPackages = []string{"signetd", "signet", "signet-broker"}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "packaging: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	o := &options{}
	var formats, packages string
	fs := flag.NewFlagSet("packaging", flag.ContinueOnError)
	fs.StringVar(&o.version, "version", "0.1.0-dev", "package and binary version (a leading v is dropped)")
	fs.StringVar(&o.commit, "commit", "", "source commit for --version (default: git rev-parse --short HEAD)")
	fs.StringVar(&o.arch, "arch", "amd64", "GOARCH to build and package for")
	fs.StringVar(&o.out, "out", "dist", "directory for the packages")
	fs.StringVar(&formats, "formats", "deb,rpm", "package formats, comma-separated")
	fs.StringVar(&packages, "packages", strings.Join(allPackages, ","), "packages to build, comma-separated")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	o.version = strings.TrimPrefix(o.version, "v")
	o.formats = strings.Split(formats, ",")
	o.packages = strings.Split(packages, ",")
	for _, f := range o.formats {
		if f != "deb" && f != "rpm" {
			return fmt.Errorf("format %q: want deb or rpm", f)
		}
	}
	for _, p := range o.packages {
		if !slices.Contains(allPackages, p) {
			return fmt.Errorf("package %q: want one of %s", p, strings.Join(allPackages, ", "))
		}
	}
	if _, err := os.Stat(filepath.Join("packaging", "nfpm")); err != nil {
		return errors.New("run this from the repository root: go run ./packaging")
	}
	if o.commit == "" {
		o.commit = gitCommit(ctx)
	}
	stage, err := os.MkdirTemp("", "signet-packaging-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(stage)
	if err := buildStage(ctx, o, stage); err != nil {
		return err
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return err
	}
	for _, p := range o.packages {
		for _, f := range o.formats {
			path, err := buildPackage(o, stage, p, f)
			if err != nil {
				return fmt.Errorf("%s %s: %w", p, f, err)
			}
			fmt.Println(path)
		}
	}
	return nil
}

// gitCommit is the short commit of HEAD, or "unknown" outside a git
// checkout.
func gitCommit(ctx context.Context) string {
	out, err := exec.CommandContext(ctx, "git", "rev-parse", "--short=12", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}
