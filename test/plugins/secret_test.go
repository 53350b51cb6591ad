package plugins

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/signetbus/signet/bus"
)

// TestSecretsNotEchoed sends health checks whose URL carries a token in its
// query string (passing, failing) or a password in its user information
// (refused) through the whole signed bus to a real host, and proves that
// neither the token nor the password appears in the verified reply, the
// host's audit record or its log lines for that request, while the URL's
// host and path stay readable. The host and path are what an operator needs;
// every query value is hidden (docs/operations.md, "Secrets in requests").
func TestSecretsNotEchoed(t *testing.T) {
	s, _ := sharedStage(t)
	waitAllUp(t)
	const host = "web3"
	version, err := s.Serves(t.Context(), host)
	if err != nil {
		t.Fatal(err)
	}
	base := s.Host(host).AppURL + "/version"
	port := strings.TrimPrefix(s.Host(host).AppURL, "http://127.0.0.1:")
	cases := []struct {
		name   string
		params map[string]any
		status bus.ResultStatus
		secret string
	}{
		{"token in a passing check's URL", map[string]any{"url": base + "?token=T0KENpass1", "contains": version}, bus.ResultOK, "T0KENpass1"},
		{"token in a failing check's URL", map[string]any{"url": base + "?access_token=T0KENfail2", "contains": "9.9", "retries": 1}, bus.ResultFailed, "T0KENfail2"},
		{"password and token in a refused URL", map[string]any{"url": "http://admin:hunter2pw@127.0.0.1:" + port + "/version?token=T0KENref3"}, bus.ResultRefused, "hunter2pw"},
		{"token in a refused URL's query", map[string]any{"url": "http://admin:x@127.0.0.1:" + port + "/version?token=T0KENref4"}, bus.ResultRefused, "T0KENref4"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := do(t, host, "health", "http", tc.params)
			if c.Result.Status != tc.status {
				t.Fatalf("want %s, got %s: %s", tc.status, c.Result.Status, c.Result.Error)
			}
			reply, _ := json.Marshal(c.Reply())
			rec := auditRecord(t, host, c.ID)
			if rec == nil {
				t.Fatalf("no audit record of %s", c.ID)
			}
			audit, _ := json.Marshal(rec)
			logs, _ := json.Marshal(fleet.logs.records(c.ID))
			for what, text := range map[string]string{"reply": string(reply), "audit record": string(audit), "host log": string(logs)} {
				if strings.Contains(text, tc.secret) {
					t.Errorf("the %s holds %q: %s", what, tc.secret, text)
				}
			}
			if u := fmt.Sprint(rec.Params["url"]); !strings.Contains(u, "127.0.0.1:"+port+"/version?") {
				t.Errorf("the audit record lost the URL's host and path: %q", u)
			}
		})
	}
}
