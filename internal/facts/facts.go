// Package facts gathers what a host says about itself: built-in facts
// (hostname, os, kernel, arch, signetd version) and facts from files and
// from the daemon's config. Filters and policy rules match on them.
package facts

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
	"golang.org/x/sys/unix"

	"github.com/signetbus/signet/internal/grammar"
	"github.com/signetbus/signet/internal/trustfile"
)

// Builtin returns the facts every host has.
func Builtin(version string) map[string]string {
	f := map[string]string{
		"arch":            runtime.GOARCH,
		"signetd_version": version,
	}
	if h, err := os.Hostname(); err == nil {
		f["hostname"] = h
	}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		f["kernel"] = unix.ByteSliceToString(u.Release[:])
		f["kernel_name"] = unix.ByteSliceToString(u.Sysname[:])
	}
	for k, v := range osRelease("/etc/os-release") {
		f[k] = v
	}
	return f
}

func osRelease(path string) map[string]string {
	out := map[string]string{}
	fh, err := os.Open(path)
	if err != nil {
		return out
	}
	defer fh.Close()
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if !ok {
			continue
		}
		v = strings.Trim(v, `"'`)
		switch k {
		case "ID":
			out["os"] = v
		case "VERSION_ID":
			out["os_version"] = v
		case "ID_LIKE":
			out["os_family"] = v
		}
	}
	return out
}

// FromFiles reads facts from YAML or JSON files (a flat map of names to
// scalar values) matching the glob patterns, in sorted order; later files
// win. A pattern matching nothing is not an error.
func FromFiles(patterns []string) (map[string]string, error) {
	out := map[string]string{}
	for _, p := range patterns {
		paths, err := filepath.Glob(p)
		if err != nil {
			return nil, fmt.Errorf("fact files %q: %w", p, err)
		}
		sort.Strings(paths)
		for _, path := range paths {
			// Facts decide policy conditions: a trust input (trustfile).
			b, err := trustfile.ReadFile(path, trustfile.Options{What: "fact file"})
			if err != nil {
				return nil, err
			}
			var m map[string]any
			if strings.HasSuffix(path, ".json") {
				err = json.Unmarshal(b, &m)
			} else {
				err = yaml.Unmarshal(b, &m)
			}
			if err != nil {
				return nil, fmt.Errorf("fact file %s: %w", path, err)
			}
			for k, v := range m {
				if err := Check(k); err != nil {
					return nil, fmt.Errorf("fact file %s: %w", path, err)
				}
				switch v.(type) {
				case map[string]any, []any:
					return nil, fmt.Errorf("fact file %s: fact %q must be a scalar", path, k)
				}
				out[k] = fmt.Sprint(v)
			}
		}
	}
	return out, nil
}

// Check validates a fact name.
func Check(name string) error {
	return grammar.CheckFactKey(name)
}

// Merge returns the union of the maps; later maps win.
func Merge(maps ...map[string]string) map[string]string {
	out := map[string]string{}
	for _, m := range maps {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}
