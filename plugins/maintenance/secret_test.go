package maintenance

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBackendErrorsNeverQuoteCredentials: a backend (or a proxy before it)
// that echoes the request's credentials in an error body, with a bearer
// token or basic auth, never gets them into the plugin's error, which
// becomes the reply, the audit reason and a log line.
func TestBackendErrorsNeverQuoteCredentials(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		_, pw, _ := r.BasicAuth()
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, "denied: header "+r.Header.Get("Authorization")+" password "+pw+" in https://am.example/api?token="+pw)
	}))
	defer srv.Close()
	dir := t.TempDir()
	tok, pw := filepath.Join(dir, "token"), filepath.Join(dir, "pw")
	os.WriteFile(tok, []byte("s3cretT0kenValue\n"), 0o600)
	os.WriteFile(pw, []byte("hunter2pw\n"), 0o600)
	for name, auth := range map[string]string{
		"bearer": `"bearer_token_file":"` + tok + `"`,
		"basic":  `"basic_auth":{"username":"signet","password_file":"` + pw + `"}`,
	} {
		p := newTestPlugin(t, `{"backends":[{"alertmanager":{"url":"`+srv.URL+`",`+auth+`}}]}`)
		_, err := run(t, p, "web1", "alice", "status", nil)
		if err == nil || !strings.Contains(err.Error(), "401") {
			t.Fatalf("%s: want a 401 error, got %v", name, err)
		}
		for _, s := range []string{"s3cretT0kenValue", "hunter2pw", "c2lnbmV0Omh1bnRlcjJwdw"} {
			if strings.Contains(err.Error(), s) {
				t.Errorf("%s: the error quotes a credential %q: %v", name, s, err)
			}
		}
	}
}
