package config

import (
	"os"
	"path/filepath"
	"strings"
)

// ResolvePath is how every path in a config file (signetd.yaml and the
// client's client.yaml alike) is read: "~" or "~/..." is the home
// directory of the user running the program, and a relative path is
// relative to base, the directory of the config file, never the working
// directory. Empty stays empty; home is os.UserHomeDir when empty.
func ResolvePath(base, p, home string) string {
	if p == "" {
		return p
	}
	if p == "~" || strings.HasPrefix(p, "~/") {
		if home == "" {
			home, _ = os.UserHomeDir()
		}
		if home != "" {
			return filepath.Join(home, strings.TrimPrefix(p[1:], "/"))
		}
		return p
	}
	if filepath.IsAbs(p) || base == "" {
		return p
	}
	return filepath.Join(base, p)
}

// ResolvePaths applies ResolvePath to the NATS settings' files.
func (c *NATS) ResolvePaths(base string) {
	for _, p := range []*string{&c.Creds, &c.NKeyFile, &c.PasswordFile, &c.CAFile, &c.CertFile, &c.KeyFile} {
		*p = ResolvePath(base, *p, "")
	}
}
