package redact

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
)

func TestSecretName(t *testing.T) {
	secret := []string{
		"password", "db_password", "passwd", "pass", "pwd", "passphrase", "secret", "client_secret",
		"token", "access_token", "refresh-token", "X-Auth-Token", "credential", "credentials", "creds",
		"api_key", "apikey", "apiKey", "API-KEY", "access_key", "accessKeyId", "secret_key", "private_key",
		"privateKey", "auth", "authorization", "bearer", "cookie", "session", "session_id", "jwt",
		"key", "sig", "signature", "X-Amz-Signature", "X-Amz-Credential", "otp",
	}
	plain := []string{
		"package", "version", "url", "backend", "server", "author", "authority", "monkey", "keyboard",
		"comment", "duration", "service", "host", "port", "status", "passage", "compass", "signal",
		"host_key", "public_key", "key_fingerprint", "authorized_keys", "key_file",
	}
	for _, n := range secret {
		if !SecretName(n) {
			t.Errorf("SecretName(%q) = false, want true", n)
		}
	}
	for _, n := range plain {
		if SecretName(n) {
			t.Errorf("SecretName(%q) = true, want false", n)
		}
	}
}

// TestStringQuery: every value of a URL's query string and fragment is
// hidden (a token may hide under any name), keys, host and path stay; in
// free text, key=value pairs with a secret-looking key are hidden.
func TestStringQuery(t *testing.T) {
	cases := map[string]string{
		"GET https://api.example.com/v1/x?token=abc123&page=2 failed": "GET https://api.example.com/v1/x?token=[redacted]&page=[redacted] failed",
		"http://127.0.0.1:8080/health?access_token=s3cr3t#frag":       "http://127.0.0.1:8080/health?access_token=[redacted]#[redacted]",
		`want 200 from "https://h/p?sig=xyz&se=2024", got 403`:        `want 200 from "https://h/p?sig=[redacted]&se=[redacted]", got 403`,
		"https://u:p@h/p?x=1":                             "https://[redacted]@h/p?x=[redacted]",
		"callback /oauth?code=1&access_token=s3cr3t done": "callback /oauth?code=1&access_token=[redacted] done",
		"mysql: password=hunter2 rejected":                "mysql: password=[redacted] rejected",
		`login failed: api_key: "AKIA123", user bob`:      `login failed: api_key: "[redacted]", user bob`,
		"Authorization: Bearer eyJhbGciOi.eyJzdWIi.sig":   "Authorization: Bearer [redacted]",
		"http://127.0.0.1:8080/health":                    "http://127.0.0.1:8080/health",
		"https://h/search?":                               "https://h/search?",
		"package nginx=1.4.2 installed":                   "package nginx=1.4.2 installed",
		"step update: ok":                                 "step update: ok",
	}
	for in, want := range cases {
		if got := String(in); got != want {
			t.Errorf("String(%q)\n got %q\nwant %q", in, got, want)
		}
	}
}

func TestParams(t *testing.T) {
	in := map[string]any{
		"package": "nginx", "phrase": "correct horse", "api_key": "AKIA", "n": int64(3),
		"url":  "https://h/x?token=t0k",
		"opts": map[string]any{"bearer": "b", "name": "x"},
	}
	out := Params(in, func(name string) bool { return name == "phrase" })
	want := map[string]any{"package": "nginx", "phrase": Mask, "api_key": Mask, "n": int64(3), "url": "https://h/x?token=" + Mask}
	for k, v := range want {
		if out[k] != v {
			t.Errorf("%s = %v, want %v", k, out[k], v)
		}
	}
	if o := out["opts"].(map[string]any); o["bearer"] != Mask || o["name"] != "x" {
		t.Errorf("nested: %v", o)
	}
	if in["phrase"] != "correct horse" {
		t.Errorf("Params changed its input")
	}
	if Params(nil, nil) != nil {
		t.Errorf("nil params must stay nil")
	}
}

func TestScrub(t *testing.T) {
	s := Scrub("login as bob with correct horse failed (correct horse)", []string{"correct horse", "", "ab"})
	if s != "login as bob with [redacted] failed ([redacted])" {
		t.Fatal(s)
	}
	if Scrub("abc", nil) != "abc" {
		t.Fatal("no secrets changed the text")
	}
}

// TestHandler: a logger wrapped by NewHandler never writes a known secret,
// a value under a secret-looking key, nor a URL's query values, whether
// they come as message, string, error, group or With attribute.
func TestHandler(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(NewHandler(slog.NewJSONHandler(&buf, nil), []string{"correct horse"}))
	log = log.With("token", "w1th-t0ken", "sender", "alice")
	log.Info("login as correct horse", "err", errors.New("dial https://h/x?k=v3ry: correct horse"),
		"api_key", "AKIAXYZ", slog.Group("req", "password", "pw123", "url", "https://u:pw@h/"))
	log.WithGroup("g").Warn("x", "reason", "bad password=pw456")
	out := buf.String()
	for _, leak := range []string{"correct horse", "w1th-t0ken", "v3ry", "AKIAXYZ", "pw123", "u:pw", "pw456"} {
		if strings.Contains(out, leak) {
			t.Errorf("log holds %q:\n%s", leak, out)
		}
	}
	if !strings.Contains(out, `"sender":"alice"`) || !strings.Contains(out, "https://h/x?k=") {
		t.Errorf("log lost harmless attributes:\n%s", out)
	}
}
