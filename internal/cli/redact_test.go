package cli

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/signetbus/signet/bus"
)

// TestOutputRedactsSecrets: what signet prints of results (the table, the
// --json output, warnings, the error line) never carries a URL's query
// values, credentials or a secret-looking data entry, and a malformed
// key=value argument is not echoed.
func TestOutputRedactsSecrets(t *testing.T) {
	o := &bus.Outcome{Warnings: []string{"reconnected to nats://u:hunter2@broker:4222"}, Results: []bus.Result{
		{Identity: "web1", Status: bus.ResultOK, Reply: &bus.Reply{Status: bus.StatusOK,
			Summary: "fetched https://h.example/x?token=T0KEN", Data: map[string]any{"api_key": "AKIAXYZ", "n": 1.0}}},
		{Identity: "web2", Status: bus.ResultFailed, Error: "GET https://h.example/x?sig=S1G: 403",
			Reply: &bus.Reply{Status: bus.StatusFailed, Code: bus.CodeFailed, Error: "GET https://h.example/x?sig=S1G: 403"}},
	}}
	leaks := []string{"T0KEN", "AKIAXYZ", "S1G:", "hunter2"}
	for _, json := range []bool{false, true} {
		var out, errw bytes.Buffer
		p := &printer{out: &out, json: json}
		if err := p.outcome(o); err != nil {
			t.Fatal(err)
		}
		summary(&errw, o)
		for _, l := range leaks {
			if strings.Contains(out.String()+errw.String(), l) {
				t.Errorf("json=%v: output holds %q:\n%s%s", json, l, out.String(), errw.String())
			}
		}
		if !strings.Contains(out.String(), "https://h.example/x?token=") {
			t.Errorf("json=%v: the URL's host and path are gone:\n%s", json, out.String())
		}
	}

	_, err := parseParams([]string{"user=bob", "hunter2"})
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("a malformed argument must be refused without echoing it: %v", err)
	}
	var stderr bytes.Buffer
	exitCode(errors.New("connect to nats://u:hunter2@h:4222?token=T0KEN: refused"), &stderr, "signet")
	if strings.Contains(stderr.String(), "hunter2") || strings.Contains(stderr.String(), "T0KEN") {
		t.Errorf("the error line holds a secret: %s", stderr.String())
	}
}
