package release

import (
	"errors"
	"fmt"
	"strings"

	"github.com/signetbus/signet/internal/lazyre"
)

// Manifest is what a release ticket asks for: apps to deploy, in order.
type Manifest struct {
	// Title is the ticket's title, used in chat, mail and the log.
	Title string
	// Items are the apps to deploy, in the order they are deployed.
	Items []Item
}

// Item is one app and the version to deploy.
type Item struct {
	App, Version string
}

// MaxItems bounds the number of apps one release may hold.
const MaxItems = 200

var (
	// appRe accepts Debian and RPM package names and deploy-template names:
	// no shell metacharacters, no leading '-'.
	appRe = lazyre.New(`^[A-Za-z0-9_][A-Za-z0-9._+-]{0,127}$`)
	// versionRe accepts Debian and RPM versions (with an epoch): no shell
	// metacharacters, no leading '-'. The deploy checks the exact grammar of
	// its package manager.
	versionRe = lazyre.New(`^[A-Za-z0-9][A-Za-z0-9.+~:_^-]{0,127}$`)
)

// ErrEmptyManifest is returned for a ticket that lists no app.
var ErrEmptyManifest = errors.New("release: manifest lists no app")

// ParseError is a malformed manifest line. Line counts from 1 at the first
// line of the ticket body.
type ParseError struct {
	Line int
	Text string // the offending line, trimmed and shortened
	Msg  string
}

func (e *ParseError) Error() string {
	return fmt.Sprintf("manifest line %d: %s: %q", e.Line, e.Msg, e.Text)
}

// ParseManifest reads a ticket's body: one "app version" or "app=version"
// per line, in deploy order. Blank lines and lines starting with '#' are
// ignored; everything else must be an app and a version. An app listed
// twice is an error, as is a body that lists none.
func ParseManifest(title, body string) (*Manifest, error) {
	title = strings.TrimSpace(title)
	if title == "" {
		return nil, errors.New("release: ticket has an empty title, expected a one-line summary of the release")
	}
	if strings.ContainsAny(title, "\r\n") {
		return nil, errors.New("release: ticket title spans several lines, expected one line")
	}
	m := &Manifest{Title: title}
	seen := map[string]int{}
	for i, raw := range strings.Split(body, "\n") {
		n := i + 1
		line := strings.TrimSpace(strings.TrimSuffix(raw, "\r"))
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		perr := func(format string, args ...any) error {
			return &ParseError{Line: n, Text: shorten(line), Msg: fmt.Sprintf(format, args...)}
		}
		var app, version string
		if a, v, ok := strings.Cut(line, "="); ok {
			app, version = strings.TrimSpace(a), strings.TrimSpace(v)
			if strings.ContainsAny(app, " \t") || strings.ContainsAny(version, " \t=") {
				return nil, perr(`expected "app=version" without spaces inside the name or version`)
			}
		} else {
			f := strings.Fields(line)
			if len(f) != 2 {
				word := "words"
				if len(f) == 1 {
					word = "word"
				}
				return nil, perr(`expected "app version" or "app=version", found %d %s`, len(f), word)
			}
			app, version = f[0], f[1]
		}
		switch {
		case app == "":
			return nil, perr("expected an app name before the version")
		case version == "":
			return nil, perr("expected a version after the app name %q", app)
		case !appRe.MatchString(app):
			return nil, perr("app name %q is not valid: expected letters, digits and . _ + - not starting with - (at most 128)", app)
		case !versionRe.MatchString(version):
			return nil, perr("version %q is not valid: expected letters, digits and . + ~ : _ ^ - starting with a letter or digit (at most 128)", version)
		}
		if first, dup := seen[app]; dup {
			return nil, perr("app %q is already listed on line %d; list each app once", app, first)
		}
		seen[app] = n
		m.Items = append(m.Items, Item{App: app, Version: version})
		if len(m.Items) > MaxItems {
			return nil, perr("too many apps, at most %d per release", MaxItems)
		}
	}
	if len(m.Items) == 0 {
		return nil, ErrEmptyManifest
	}
	return m, nil
}

func shorten(s string) string {
	const max = 80
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}
