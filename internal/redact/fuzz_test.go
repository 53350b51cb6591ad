package redact

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzString: String never panics, keeps valid UTF-8 valid, is idempotent,
// and never lets through the value of a query parameter it was given in a
// URL.
func FuzzString(f *testing.F) {
	for _, s := range []string{
		"http://admin:hunter2@127.0.0.1:1/x", "GET https://h/x?token=abc&page=2#frag failed",
		`{"password": "hunter2"}`, "password=x", "Authorization: Bearer abcdef.ghi", "a://?", "://", "x:'", `k:"`,
		"host key: open /etc/x: denied", "http:u:p@h", "token=[redacted]", "é://é?é=é",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := String(s)
		if utf8.ValidString(s) && !utf8.ValidString(out) {
			t.Fatalf("String(%q) = %q: invalid UTF-8", s, out)
		}
		if again := String(out); again != out {
			t.Fatalf("not idempotent: %q -> %q -> %q", s, out, again)
		}
		u := "https://h.example/p?tok=" + s
		if v := strings.TrimSpace(s); v != "" && !strings.ContainsAny(s, " \t\r\n\"'<>&;#") && strings.TrimRight(s, ".,;:)]") == s {
			if got := String(u); !strings.HasPrefix(got, "https://h.example/p?tok="+Mask) {
				t.Fatalf("String(%q) = %q: the query value survived", u, got)
			}
		}
	})
}
