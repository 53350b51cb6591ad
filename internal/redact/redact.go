// Package redact removes credentials from text and values before they are
// logged, audited or printed. It is the one place that decides what looks
// secret; signetd's audit log and daemon log, the signet CLI's output and
// the workflow logs all go through it.
//
// What it removes:
//   - the user information of URLs ("https://user:password@host");
//   - every value of a URL's query string and fragment, wherever a URL
//     appears in a string ("https://h/p?token=x&page=2" becomes
//     "https://h/p?token=[redacted]&page=[redacted]"). All values go,
//     not only those under secret-looking keys, because a token may hide
//     under any name (sig, se, X-Amz-Credential, code...); the scheme,
//     host, path and the keys stay, which is what an operator needs to
//     tell one endpoint from another;
//   - in free text, the value of key=value and key: value pairs whose key
//     looks secret (SecretName), and the credentials after "Bearer" or
//     "Basic";
//   - the values of parameters, map entries and log attributes whose
//     names look secret, and of those a plugin's declaration marks
//     sensitive (Params);
//   - known secret values, wherever they appear (Scrub, NewHandler).
//
// Name-based detection is a second line of defence: a plugin declares its
// secret inputs sensitive (plugins.Input.Sensitive), and signetd never
// echoes their values.
package redact

import (
	"fmt"
	"strings"
	"unicode"

	"github.com/signetbus/signet/internal/lazyre"
)

// Mask replaces every removed value.
const Mask = "[redacted]"

// userinfo matches user information up to an '@' (user:password@ or
// token@) after "scheme://", or after "scheme:" for well-known URL schemes
// (the malformed "http:user:pass@host" still carries a password).
var userinfo = lazyre.New(`(?i)\b((?:[a-z][a-z0-9+.-]*://)|(?:https?|nats|tls|wss?|smtps?|ftps?|ldaps?|redis|postgres(?:ql)?|mysql|amqps?):)[^\s/@"'<>]+@`)

// authScheme matches the credentials of an HTTP Authorization header.
var authScheme = lazyre.New(`(?i)\b(bearer|basic)(\s+)[A-Za-z0-9._~+/=-]{6,}`)

// Pairs: the value after a key and '=' or ':' is removed when the key
// looks secret. With ':' the key or the value must be quoted
// ("password": "x", as JSON and YAML write it): an unquoted
// "host key: open /etc/...: no such file" is an error chain, not a secret.

// String removes credentials from s: URL user information, URL query and
// fragment values, secret-looking key=value pairs and Authorization
// credentials.
func String(s string) string {
	if len(s) < 4 {
		return s
	}
	// Cheap checks first: most text has no URL, no '@' and no credentials,
	// and this runs on every log record of signetd.
	if strings.IndexByte(s, '@') >= 0 {
		s = userinfo.ReplaceAllString(s, "${1}"+Mask+"@")
	}
	if strings.Contains(s, "://") && strings.ContainsAny(s, "?#") {
		s = redactURLs(s)
	}
	if containsFold(s, "bearer") || containsFold(s, "basic") {
		s = authScheme.ReplaceAllString(s, "${1}${2}"+Mask)
	}
	if strings.ContainsAny(s, "=:") {
		s = redactPairs(s)
	}
	return s
}

// redactURLs applies redactURL to every URL in s that has a query string
// or a fragment.
func redactURLs(s string) string {
	var b strings.Builder
	last := 0
	for i := 0; i+3 <= len(s); {
		k := strings.Index(s[i:], "://")
		if k < 0 {
			break
		}
		at := i + k
		start := at
		for start > last && isSchemeChar(s[start-1]) {
			start--
		}
		end := at + 3
		for end < len(s) && !isURLEnd(s[end]) {
			end++
		}
		i = end
		if start == at || !isLetter(s[start]) || !strings.ContainsAny(s[at+3:end], "?#") {
			continue
		}
		b.WriteString(s[last:start])
		b.WriteString(redactURL(s[start:end]))
		last = end
	}
	if last == 0 {
		return s
	}
	b.WriteString(s[last:])
	return b.String()
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
func isSchemeChar(c byte) bool {
	return isLetter(c) || c >= '0' && c <= '9' || c == '+' || c == '.' || c == '-'
}
func isURLEnd(c byte) bool {
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '"' || c == '\'' || c == '<' || c == '>'
}

// redactURL hides every value of the query string and the fragment of u.
func redactURL(u string) string {
	i := strings.IndexAny(u, "?#")
	// Trailing punctuation belongs to the sentence, not the URL (but the
	// ']' of an earlier Mask stays).
	j := len(u)
	for j > i+1 && strings.IndexByte(".,;:)]", u[j-1]) >= 0 && !strings.HasSuffix(u[:j], Mask) {
		j--
	}
	u, trail := u[:j], u[j:]
	var b strings.Builder
	b.WriteString(u[:i+1])
	rest := u[i+1:]
	if u[i] == '?' {
		q, frag, hasFrag := strings.Cut(rest, "#")
		b.WriteString(redactQuery(q))
		if hasFrag {
			b.WriteByte('#')
			b.WriteString(redactQuery(frag))
		}
	} else {
		b.WriteString(redactQuery(rest))
	}
	b.WriteString(trail)
	return b.String()
}

func redactQuery(q string) string {
	if q == "" {
		return q
	}
	parts := strings.FieldsFunc(q, func(r rune) bool { return r == '&' || r == ';' })
	sep := "&"
	if !strings.Contains(q, "&") && strings.Contains(q, ";") {
		sep = ";"
	}
	for i, p := range parts {
		if k, v, ok := strings.Cut(p, "="); ok {
			if v != "" {
				parts[i] = k + "=" + Mask
			}
		} else {
			parts[i] = Mask
		}
	}
	return strings.Join(parts, sep)
}

// redactPairs masks the value after each secret-looking key.
func redactPairs(s string) string {
	var b strings.Builder
	last := 0
	for i := 0; i < len(s); i++ {
		if s[i] != '=' && s[i] != ':' {
			continue
		}
		// The key: key chars, then optional quote and spaces, before i.
		j := i
		for j > 0 && (s[j-1] == ' ' || s[j-1] == '\t') {
			j--
		}
		keyQuoted := j > 0 && (s[j-1] == '"' || s[j-1] == '\'')
		if keyQuoted {
			j--
		}
		ke := j
		for j > 0 && isKeyChar(s[j-1]) {
			j--
		}
		if j == ke || j < last || !SecretName(s[j:ke]) {
			continue
		}
		start := i + 1
		for start < len(s) && (s[start] == ' ' || s[start] == '\t') {
			start++
		}
		rest := s[start:]
		valQuoted := strings.HasPrefix(rest, `"`) || strings.HasPrefix(rest, `'`)
		if s[i] == ':' && !keyQuoted && !valQuoted {
			continue
		}
		if strings.HasPrefix(rest, Mask) || strings.HasPrefix(rest[min(1, len(rest)):], Mask) {
			continue
		}
		end := start
		if valQuoted {
			k := strings.IndexByte(rest[1:], rest[0])
			if k < 0 {
				continue
			}
			start, end = start+1, start+1+k
		} else {
			end = start + len(rest)
			if k := strings.IndexAny(rest, " \t\r\n&,;\"'<>)]"); k >= 0 {
				end = start + k
			}
		}
		v := s[start:end]
		if v == "" || strings.EqualFold(v, "bearer") || strings.EqualFold(v, "basic") {
			continue
		}
		b.WriteString(s[last:start])
		b.WriteString(Mask)
		last = end
		i = end - 1
	}
	if last == 0 {
		return s
	}
	b.WriteString(s[last:])
	return b.String()
}

func isKeyChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-'
}

// containsFold reports whether s contains sub (lowercase ASCII) in any case.
func containsFold(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if (s[i]|0x20) == sub[0] && strings.EqualFold(s[i:i+len(sub)], sub) {
			return true
		}
	}
	return false
}

// secretParts are substrings of a name, lowercased with separators
// removed, that mark it secret.
var secretParts = []string{
	"password", "passwd", "passphrase", "secret", "token", "credential", "apikey", "accesskey",
	"privatekey", "signingkey", "authorization", "bearer", "cookie", "jwt", "sessionid",
}

// nameHints is a cheap first check: a secret name contains one of these.
var nameHints = []string{"pass", "pwd", "secret", "token", "cred", "key", "auth", "bearer", "cookie", "jwt", "session", "sig", "private", "otp"}

// publicParts mark a name public even when it has a secret-looking word:
// a host key or a public key's fingerprint is what an operator checks.
var publicParts = []string{"public", "fingerprint", "hostkey", "keyfile", "keypath"}

// secretWords are whole words of a name (split at separators and at
// lower-to-upper case changes) that mark it secret.
var secretWords = map[string]bool{
	"pass": true, "pwd": true, "auth": true, "key": true, "sig": true, "signature": true,
	"session": true, "private": true, "creds": true, "otp": true,
}

// SecretName reports whether a parameter, query or attribute name looks
// like it holds a secret: password, passwd, passphrase, pass, pwd, secret,
// token, credential(s), creds, api_key, access_key, private_key, auth,
// authorization, bearer, cookie, session, jwt, key, sig, signature, otp,
// in any case and with any separators ("X-Auth-Token", "apiKey"). Names
// with public, fingerprint, host_key, key_file or key_path are not secret.
func SecretName(name string) bool {
	hint := false
	for _, h := range nameHints {
		if containsFold(name, h) {
			hint = true
			break
		}
	}
	if !hint {
		return false
	}
	var joined strings.Builder
	var words []string
	start := -1
	prevLower := false
	flush := func(end int) {
		if start >= 0 {
			words = append(words, strings.ToLower(name[start:end]))
			start = -1
		}
	}
	for i, r := range name {
		if !unicode.IsLetter(r) && !unicode.IsDigit(r) {
			flush(i)
			prevLower = false
			continue
		}
		joined.WriteRune(unicode.ToLower(r))
		if unicode.IsUpper(r) && prevLower {
			flush(i)
		}
		if start < 0 {
			start = i
		}
		prevLower = unicode.IsLower(r) || unicode.IsDigit(r)
	}
	flush(len(name))
	j := joined.String()
	for _, p := range publicParts {
		if strings.Contains(j, p) {
			return false
		}
	}
	for _, p := range secretParts {
		if strings.Contains(j, p) {
			return true
		}
	}
	for _, w := range words {
		if secretWords[w] {
			return true
		}
	}
	return false
}

// Value redacts a parameter value: strings go through String, and inside
// lists and maps, entries whose keys look secret are masked.
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
	case []string:
		out := make([]string, len(x))
		for i, e := range x {
			out[i] = String(e)
		}
		return out
	case map[string]any:
		return Params(x, nil)
	case map[string]string:
		out := make(map[string]string, len(x))
		for k, e := range x {
			if SecretName(k) {
				out[k] = Mask
			} else {
				out[k] = String(e)
			}
		}
		return out
	}
	return v
}

// Params returns a redacted copy of request parameters: the value of a
// parameter the declaration marks sensitive (sensitive may be nil) or whose
// name looks secret is replaced by Mask; every other value goes through
// Value.
func Params(params map[string]any, sensitive func(name string) bool) map[string]any {
	if params == nil {
		return nil
	}
	out := make(map[string]any, len(params))
	for k, v := range params {
		if (sensitive != nil && sensitive(k)) || SecretName(k) {
			out[k] = Mask
			continue
		}
		out[k] = Value(v)
	}
	return out
}

// minSecret is the shortest secret value Scrub replaces: shorter ones
// would mangle unrelated text, and declared validation never echoes them.
const minSecret = 3

// Scrub replaces every occurrence of each of the secret values in s by
// Mask. Values shorter than 3 bytes are left alone.
func Scrub(s string, secrets []string) string {
	for _, v := range secrets {
		if len(v) >= minSecret && strings.Contains(s, v) {
			s = strings.ReplaceAll(s, v, Mask)
		}
	}
	return s
}

// Values returns the values, as text, of the parameters that Params masks
// (declared sensitive, or with a secret-looking name, at any depth), for
// Scrub to remove wherever they are echoed.
func Values(params map[string]any, sensitive func(name string) bool) []string {
	var out []string
	var walk func(v any, masked bool)
	walk = func(v any, masked bool) {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				walk(e, masked || SecretName(k))
			}
		case []any:
			for _, e := range x {
				walk(e, masked)
			}
		case nil, bool:
		case string:
			if masked {
				out = append(out, x)
			}
		default:
			if masked {
				out = append(out, fmt.Sprint(x))
			}
		}
	}
	for k, v := range params {
		walk(v, (sensitive != nil && sensitive(k)) || SecretName(k))
	}
	return out
}
