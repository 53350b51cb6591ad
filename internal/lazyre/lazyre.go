// Package lazyre holds regular expressions that are compiled on first use
// rather than at package initialisation. Every signet command pays for the
// init of every package its binary links, and a pattern with a counted
// repeat such as {0,252} compiles into thousands of instructions, so a
// package-level regexp.MustCompile makes `signet --version` slow for
// patterns the command never uses.
//
// A Regexp is declared like the compiled one and used the same way:
//
//	var nameRe = lazyre.New(`^[a-z][a-z0-9_]{0,63}$`)
//	ok := nameRe.MatchString(s)
//
// An invalid pattern panics on first use instead of at start-up, so each
// pattern must be exercised by its package's tests.
package lazyre

import (
	"regexp"
	"sync"
)

// Regexp is a regular expression compiled on first use; it is safe for
// concurrent use.
type Regexp struct {
	re func() *regexp.Regexp
}

// New returns a Regexp for pattern, compiled by regexp.MustCompile the
// first time it is used.
func New(pattern string) *Regexp {
	return &Regexp{re: sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(pattern) })}
}

// Compiled returns the compiled expression.
func (r *Regexp) Compiled() *regexp.Regexp { return r.re() }

// MatchString reports whether s contains a match.
func (r *Regexp) MatchString(s string) bool { return r.re().MatchString(s) }

// FindStringSubmatch is regexp.Regexp.FindStringSubmatch.
func (r *Regexp) FindStringSubmatch(s string) []string { return r.re().FindStringSubmatch(s) }

// ReplaceAllString is regexp.Regexp.ReplaceAllString.
func (r *Regexp) ReplaceAllString(src, repl string) string { return r.re().ReplaceAllString(src, repl) }

// ReplaceAllStringFunc is regexp.Regexp.ReplaceAllStringFunc.
func (r *Regexp) ReplaceAllStringFunc(src string, repl func(string) string) string {
	return r.re().ReplaceAllStringFunc(src, repl)
}

// String returns the source text.
func (r *Regexp) String() string { return r.re().String() }
