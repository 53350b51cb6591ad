package releasetest

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
)

// ChatSecret is the secret part of a [Chat] webhook URL, standing for the
// token a real Slack webhook URL holds; tests look for it in what must not
// leak it.
const ChatSecret = "s3cr3tW3bh00k"

const chatPath = "/hooks/T000/B000/" + ChatSecret

// Chat is a Slack-compatible incoming webhook: it accepts a POST of
// application/json {"text": ...} on its secret path, answers "ok" and
// records the text, in the order received. Like Slack it answers 404
// no_service to any other path and 400 invalid_payload to a bad body.
type Chat struct {
	*httptest.Server

	mu     sync.Mutex
	texts  []string
	status int
	failN  int // answer this many more valid posts with failS
	failS  int
}

// NewChat starts a chat webhook receiver.
func NewChat(t testing.TB) *Chat {
	s := &Chat{}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

func (s *Chat) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.Method != http.MethodPost || r.URL.Path != chatPath {
		http.Error(w, "no_service", http.StatusNotFound)
		return
	}
	var in struct {
		Text *string `json:"text"`
	}
	if r.Header.Get("Content-Type") != "application/json" || json.NewDecoder(r.Body).Decode(&in) != nil || in.Text == nil {
		http.Error(w, "invalid_payload", http.StatusBadRequest)
		return
	}
	if s.status != 0 {
		http.Error(w, "channel_is_archived", s.status)
		return
	}
	if s.failN > 0 {
		s.failN--
		http.Error(w, "rate_limited", s.failS)
		return
	}
	s.texts = append(s.texts, *in.Text)
	io.WriteString(w, "ok")
}

// URL returns the webhook URL, secret path included.
func (s *Chat) URL() string { return s.Server.URL + chatPath }

// FailNext answers the next n valid posts with status (429 rate_limited,
// say) without recording them.
func (s *Chat) FailNext(n, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failN, s.failS = n, status
}

// SetStatus makes later valid posts fail with status and Slack's
// channel_is_archived error, recording nothing; 0 restores 200 "ok".
func (s *Chat) SetStatus(status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status = status
}

// Texts returns the texts received, in order.
func (s *Chat) Texts() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.texts...)
}
