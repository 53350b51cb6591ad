package redact

import "testing"

func TestString(t *testing.T) {
	cases := map[string]string{
		"http://admin:hunter2@127.0.0.1:1/x":                          "http://[redacted]@127.0.0.1:1/x",
		`want scheme://host/path, got "http:admin:hunter2@127.0.0.1"`: `want scheme://host/path, got "http:[redacted]@127.0.0.1"`,
		"nats://tok3n@nats:4222 and https://u:p@h/":                   "nats://[redacted]@nats:4222 and https://[redacted]@h/",
		"alice@bastion":                "alice@bastion",
		"mail to ops@example.com":      "mail to ops@example.com",
		"http://127.0.0.1:8080/health": "http://127.0.0.1:8080/health",
		"package 1.4.2":                "package 1.4.2",
	}
	for in, want := range cases {
		if got := String(in); got != want {
			t.Errorf("String(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestValue(t *testing.T) {
	v := Value(map[string]any{"urls": []any{"https://u:p@h/"}, "n": int64(3)}).(map[string]any)
	if v["urls"].([]any)[0] != "https://[redacted]@h/" || v["n"] != int64(3) {
		t.Fatalf("%v", v)
	}
}
