package audit

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/signetbus/signet/bus"
)

func TestAuditWritesJSONLinesAndRedactsSecrets(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "audit.jsonl")
	l, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	l.Audit(&bus.AuditRecord{Time: time.Unix(1, 0), RequestID: "r1", Agent: "package", Action: "update",
		Params: map[string]any{"package": "nginx", "db_password": "hunter2", "api_token": "t0k"}, Decision: "accepted", Status: bus.StatusOK})
	l.Audit(&bus.AuditRecord{RequestID: "r2", Decision: "refused", Code: bus.CodeExpired, Reason: "request expired 93s ago (ttl 60s)"})
	l.Audit(&bus.AuditRecord{RequestID: "r3", Decision: "refused", Code: bus.CodeInvalidParams,
		Params: map[string]any{"url": "http://admin:s3cr3t@127.0.0.1:1/x"}, Reason: `got "http:admin:s3cr3t@127.0.0.1"`})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "hunter2") || strings.Contains(string(b), "t0k") || strings.Contains(string(b), "s3cr3t") {
		t.Fatalf("secret written to the audit log:\n%s", b)
	}
	st, _ := os.Stat(path)
	if st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", st.Mode().Perm())
	}
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	var recs []bus.AuditRecord
	for sc.Scan() {
		var r bus.AuditRecord
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		recs = append(recs, r)
	}
	if len(recs) != 3 || recs[2].Params["url"] != "http://[redacted]@127.0.0.1:1/x" || recs[0].Params["package"] != "nginx" || recs[0].Params["db_password"] != "[redacted]" || recs[1].Code != bus.CodeExpired {
		t.Fatalf("records %+v", recs)
	}
}
