package release

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// TestRunLogRedacts: the release log is mailed and posted to the ticket
// and the chat; a deploy line or an error quoting a URL with a token or
// credentials must not carry them there, nor to the operator's terminal.
func TestRunLogRedacts(t *testing.T) {
	var out bytes.Buffer
	l := &runLog{out: &out, now: func() time.Time { return time.Unix(0, 0) }}
	l.Printf("fetch https://artifacts.example/app.deb?X-Amz-Signature=S1GNATURE failed")
	w := l.Writer("  app: ")
	w.Write([]byte("error: nats://u:hunter2@broker:4222 password=pw123\n"))
	for _, s := range []string{l.String(), out.String()} {
		for _, leak := range []string{"S1GNATURE", "hunter2", "pw123"} {
			if strings.Contains(s, leak) {
				t.Errorf("release log holds %q:\n%s", leak, s)
			}
		}
		if !strings.Contains(s, "https://artifacts.example/app.deb?X-Amz-Signature=") {
			t.Errorf("release log lost the URL:\n%s", s)
		}
	}
}
