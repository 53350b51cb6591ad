package main

import (
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"

	"github.com/signetbus/signet/internal/cli"
	"github.com/signetbus/signet/internal/signetd"
	"github.com/signetbus/signet/internal/version"
)

// buildStage fills stage with what the nfpm configs name as ${STAGE}/...:
// bin/ (the binaries), man/PROGRAM/ (gzipped man pages) and completion/
// (bash, zsh and fish completions).
func buildStage(ctx context.Context, o *options, stage string) error {
	pkg := "github.com/signetbus/signet/internal/version"
	ldflags := fmt.Sprintf("-s -w -X %s.Version=%s -X %s.Commit=%s", pkg, o.version, pkg, o.commit)
	for _, prog := range []string{"signet", "signetd"} {
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", ldflags,
			"-o", filepath.Join(stage, "bin", prog), "./cmd/"+prog)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+o.arch)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("go build %s: %w", prog, err)
		}
	}
	// The command trees print the version they were built with: the same
	// one the binaries carry.
	version.Version, version.Commit = o.version, o.commit
	date := time.Now().UTC()
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" { // reproducible builds
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return fmt.Errorf("SOURCE_DATE_EPOCH %q: %w", s, err)
		}
		date = time.Unix(n, 0).UTC()
	}
	trees := map[string]*cobra.Command{
		"signet":  cli.Command(cli.IO{Out: io.Discard, Err: io.Discard, Getenv: func(string) string { return "" }}),
		"signetd": signetd.Command(signetd.IO{Out: io.Discard, Err: io.Discard, Getenv: func(string) string { return "" }}),
	}
	for prog, root := range trees {
		root.DisableAutoGenTag = true
		if err := manPages(root, prog, version.Version, date, filepath.Join(stage, "man", prog)); err != nil {
			return fmt.Errorf("man pages for %s: %w", prog, err)
		}
		if err := completions(root, prog, filepath.Join(stage, "completion")); err != nil {
			return fmt.Errorf("completions for %s: %w", prog, err)
		}
	}
	return nil
}

// manPages writes one gzipped page per command (signet.1.gz,
// signet-ping.1.gz, ...) into dir.
func manPages(root *cobra.Command, prog, ver string, date time.Time, dir string) error {
	tmp := dir + ".plain"
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	hdr := &doc.GenManHeader{Section: "1", Source: prog + " " + ver, Manual: "signet manual", Date: &date}
	if err := doc.GenManTree(root, hdr, tmp); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	pages, err := filepath.Glob(filepath.Join(tmp, "*.1"))
	if err != nil {
		return err
	}
	for _, p := range pages {
		if err := gzipFile(p, filepath.Join(dir, filepath.Base(p)+".gz")); err != nil {
			return err
		}
	}
	return nil
}

func gzipFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	f, err := os.Create(dst)
	if err != nil {
		return err
	}
	zw, err := gzip.NewWriterLevel(f, gzip.BestCompression) // no name, no time: reproducible
	if err == nil {
		_, err = zw.Write(b)
	}
	if cerr := zw.Close(); err == nil {
		err = cerr
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// completions writes PROG.bash, PROG.zsh and PROG.fish into dir.
func completions(root *cobra.Command, prog, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	gens := map[string]func(io.Writer) error{
		"bash": func(w io.Writer) error { return root.GenBashCompletionV2(w, true) },
		"zsh":  root.GenZshCompletion,
		"fish": func(w io.Writer) error { return root.GenFishCompletion(w, true) },
	}
	for shell, gen := range gens {
		f, err := os.Create(filepath.Join(dir, prog+"."+shell))
		if err != nil {
			return err
		}
		err = gen(f)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("%s: %w", shell, err)
		}
	}
	return nil
}
