package main

import (
	"context"
	"strings"
	"testing"
)

func TestPkgVersion(t *testing.T) {
	for in, want := range map[string]string{
		"1.2.3":     "1.2.3",
		"1.2.0-rc1": "1.2.0~rc1",
		"0.1.0-dev": "0.1.0~dev",
	} {
		if got := pkgVersion(in); got != want {
			t.Errorf("pkgVersion(%q) = %q, want %q", in, got, want)
		}
	}
}

// A wrong flag fails before anything is built.
func TestRunRefusesBadFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-formats", "apk"}, `format "apk": want deb or rpm`},
		{[]string{"-packages", "signet-agent"}, `package "signet-agent": want one of signetd, signet, signet-broker`},
		{[]string{"extra"}, `unexpected argument "extra"`},
	} {
		err := run(context.Background(), tc.args)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("run %v: %v, want an error with %q", tc.args, err, tc.want)
		}
	}
}
