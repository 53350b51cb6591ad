package audit

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/signetbus/signet/bus"
)

// TestAuditRedactsEachKindOfSecret writes records that carry a secret of
// each kind and proves none reaches the log: parameters whose names look
// secret in any spelling, a parameter the plugin declares sensitive (and
// its value quoted in the reason and the summary), and tokens in URL query
// strings in a parameter, the reason and the summary. The URLs' hosts and
// paths stay readable.
func TestAuditRedactsEachKindOfSecret(t *testing.T) {
	var buf bytes.Buffer
	l := New(&buf)
	l.Sensitive = func(agent, action string) map[string]bool {
		if agent == "vault" && action == "login" {
			return map[string]bool{"phrase": true}
		}
		return nil
	}
	names := []string{"api_key", "apikey", "apiKey", "access_key", "secret_key", "auth", "authorization", "bearer",
		"X-Auth-Token", "private_key", "client_secret", "passwd", "cookie", "session_id", "key"}
	params := map[string]any{"package": "nginx", "phrase": "correct horse battery",
		"url": "https://hooks.example/v1/notify?token=qT0k3n&access_token=aT0k3n"}
	for i, n := range names {
		params[n] = "S3CR3T-" + string(rune('a'+i))
	}
	l.Audit(&bus.AuditRecord{RequestID: "r1", Agent: "vault", Action: "login", Params: params, Decision: "refused",
		Reason:  "login as correct horse battery failed: GET https://vault.example/v1/sys?access_token=rT0k3n: 403",
		Summary: "called https://h.example/cb?code=1&token=sT0k3n"})
	out := buf.String()
	for _, leak := range []string{"S3CR3T", "correct horse", "qT0k3n", "aT0k3n", "rT0k3n", "sT0k3n"} {
		if strings.Contains(out, leak) {
			t.Errorf("the audit log holds %q:\n%s", leak, out)
		}
	}
	var rec bus.AuditRecord
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatal(err)
	}
	if rec.Params["package"] != "nginx" || !strings.HasPrefix(rec.Params["url"].(string), "https://hooks.example/v1/notify?token=") ||
		!strings.Contains(rec.Reason, "https://vault.example/v1/sys?access_token=") {
		t.Errorf("redaction hid what an operator needs: %+v", rec)
	}
	if params["phrase"] != "correct horse battery" {
		t.Errorf("Audit changed the caller's parameters")
	}
}
