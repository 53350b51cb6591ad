package packages

import (
	"fmt"
	"strings"
	"unicode"

	"github.com/signetbus/signet/internal/lazyre"
)

const (
	maxNameLen    = 128
	maxVersionLen = 128
)

var (
	// Debian policy 5.6.1: lowercase letters, digits, '+', '-' and '.', at
	// least two characters, starting with an alphanumeric.
	debNameRe = lazyre.New(`^[a-z0-9][a-z0-9+.-]+$`)
	// Debian policy 5.6.12: [epoch:]upstream_version[-debian_revision];
	// epoch digits, upstream starting with a digit, made of alphanumerics
	// and . + ~ - (a '-' only when a revision follows), revision made of
	// alphanumerics and . + ~.
	debVersionRe = lazyre.New(`^(?:[0-9]{1,9}:)?[0-9][A-Za-z0-9.+~]*(?:-[A-Za-z0-9.+~-]*[A-Za-z0-9.+~])?$`)
	// RPM names: alphanumerics and . _ + -, starting with an alphanumeric
	// or '_' (Fedora naming guidelines; rpm itself refuses whitespace and
	// most punctuation).
	rpmNameRe = lazyre.New(`^[A-Za-z0-9_][A-Za-z0-9._+-]*$`)
	// RPM [epoch:]version[-release]: version and release are alphanumerics
	// and . _ + ~ ^ (no '-' inside either), each starting with an alphanumeric.
	rpmVersionRe = lazyre.New(`^(?:[0-9]{1,9}:)?[A-Za-z0-9][A-Za-z0-9._+~^]*(?:-[A-Za-z0-9][A-Za-z0-9._+~^]*)?$`)
)

// basicRule applies the rules every name and version shares, and returns
// the broken one, or "".
func basicRule(what, s string, max int) string {
	switch {
	case s == "":
		return what + " must not be empty"
	case len(s) > max:
		return fmt.Sprintf("%s must be at most %d bytes, got %d", what, max, len(s))
	case strings.IndexFunc(s, func(r rune) bool { return unicode.IsControl(r) || r == unicode.ReplacementChar }) >= 0:
		return fmt.Sprintf("%s must not contain control characters (NUL, newline, ...), got %q", what, s)
	case strings.HasPrefix(s, "-"):
		return fmt.Sprintf("%s must not start with '-' (it would be read as an option), got %q", what, s)
	}
	return ""
}

func checkDebName(s string) string {
	if r := basicRule("a package name", s, maxNameLen); r != "" {
		return r
	}
	if !debNameRe.MatchString(s) {
		return fmt.Sprintf("%q is not a Debian package name: want %s (lowercase letters, digits, '+', '-', '.', at least 2 characters, starting with a letter or digit)", s, debNameRe)
	}
	return ""
}

func checkDebVersion(s string) string {
	if r := basicRule("a version", s, maxVersionLen); r != "" {
		return r
	}
	if !debVersionRe.MatchString(s) {
		return fmt.Sprintf("%q is not a Debian version: want [epoch:]upstream[-revision], upstream starting with a digit, made of letters, digits and . + ~ - (':' only after a numeric epoch)", s)
	}
	return ""
}

func checkRPMName(s string) string {
	if r := basicRule("a package name", s, maxNameLen); r != "" {
		return r
	}
	if !rpmNameRe.MatchString(s) {
		return fmt.Sprintf("%q is not an RPM package name: want %s (letters, digits, '.', '_', '+', '-', starting with a letter, digit or '_')", s, rpmNameRe)
	}
	return ""
}

func checkRPMVersion(s string) string {
	if r := basicRule("a version", s, maxVersionLen); r != "" {
		return r
	}
	if !rpmVersionRe.MatchString(s) {
		return fmt.Sprintf("%q is not an RPM version: want [epoch:]version[-release], each made of letters, digits and . _ + ~ ^, starting with a letter or digit", s)
	}
	return ""
}

// sameDebVersion compares Debian versions as dpkg prints them, treating a
// missing epoch as epoch 0.
func sameDebVersion(installed, want string) bool {
	return strings.TrimPrefix(installed, "0:") == strings.TrimPrefix(want, "0:")
}

// sameRPMVersion compares an installed [E:]V-R with a wanted [E:]V[-R]: a
// wanted version without a release matches any release, and a missing
// epoch is epoch 0.
func sameRPMVersion(installed, want string) bool {
	installed, want = strings.TrimPrefix(installed, "0:"), strings.TrimPrefix(want, "0:")
	if installed == want {
		return true
	}
	if strings.Contains(want, "-") {
		return false
	}
	v, _, ok := strings.Cut(installed, "-")
	return ok && v == want
}
