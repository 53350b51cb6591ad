// Package redact removes credentials from text before it is logged or
// audited: the user information of URLs ("https://user:password@host")
// wherever it appears in a string.
package redact

import "regexp"

// userinfo matches user information up to an '@' (user:password@ or
// token@) after "scheme://", or after "scheme:" for well-known URL schemes
// (the malformed "http:user:pass@host" still carries a password).
var userinfo = regexp.MustCompile(`(?i)\b((?:[a-z][a-z0-9+.-]*://)|(?:https?|nats|tls|wss?|smtps?|ftps?|ldaps?|redis|postgres(?:ql)?|mysql|amqps?):)[^\s/@"'<>]+@`)

// String replaces credentials in s with "[redacted]".
func String(s string) string {
	if len(s) < 4 {
		return s
	}
	return userinfo.ReplaceAllString(s, "${1}[redacted]@")
}

// Value redacts strings inside a parameter value (strings, lists, maps).
func Value(v any) any {
	switch x := v.(type) {
	case string:
		return String(x)
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = Value(e)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = Value(e)
		}
		return out
	}
	return v
}
