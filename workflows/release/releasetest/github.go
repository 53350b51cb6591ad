package releasetest

import (
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
)

// GitHubOptions describe the one issue a [GitHub] server holds.
type GitHubOptions struct {
	// Prefix is where the API is rooted: "" as on api.github.com, or
	// "/api/v3" as on GitHub Enterprise Server.
	Prefix string
	// Path is the issue's path below Prefix, /repos/OWNER/REPO/issues/N.
	Path string
	// Token is the bearer token accepted; any other gets 401 "Bad
	// credentials".
	Token string
	// Title is the issue's title.
	Title string
	// Body is a string, or nil for an issue without a body.
	Body any
}

// GitHub serves one open issue through the GitHub REST endpoints a release
// uses: GET issue, POST comments and PATCH state. It requires the Accept
// header application/vnd.github+json and records comments and the state.
// Its URL field is the base URL to configure (add Prefix for Enterprise).
type GitHub struct {
	*httptest.Server
	t    testing.TB
	opts GitHubOptions

	mu       sync.Mutex
	comments []string
	state    string
}

// NewGitHub starts a GitHub server for opts; the issue starts open.
func NewGitHub(t testing.TB, opts GitHubOptions) *GitHub {
	s := &GitHub{t: t, opts: opts, state: "open"}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

func (s *GitHub) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.Header.Get("Authorization") != "Bearer "+s.opts.Token {
		WriteJSON(w, http.StatusUnauthorized, map[string]any{"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"})
		return
	}
	if a := r.Header.Get("Accept"); a != "application/vnd.github+json" {
		s.t.Errorf("github: Accept %q, want application/vnd.github+json", a)
	}
	issue := s.opts.Prefix + s.opts.Path
	switch {
	case r.Method == http.MethodGet && r.URL.Path == issue:
		WriteJSON(w, http.StatusOK, map[string]any{"number": 42, "title": s.opts.Title, "body": s.opts.Body, "state": s.state})
	case r.Method == http.MethodPost && r.URL.Path == issue+"/comments":
		var in struct {
			Body string `json:"body"`
		}
		if !decodeJSON(w, r, &in) {
			return
		}
		s.comments = append(s.comments, in.Body)
		WriteJSON(w, http.StatusCreated, map[string]any{"id": 1, "body": in.Body})
	case r.Method == http.MethodPatch && r.URL.Path == issue:
		var in struct {
			State string `json:"state"`
		}
		if !decodeJSON(w, r, &in) {
			return
		}
		if in.State != "open" && in.State != "closed" {
			WriteJSON(w, http.StatusUnprocessableEntity, map[string]any{"message": "Validation Failed"})
			return
		}
		s.state = in.State
		WriteJSON(w, http.StatusOK, map[string]any{"number": 42, "state": s.state})
	default:
		WriteJSON(w, http.StatusNotFound, map[string]any{"message": "Not Found"})
	}
}

// Comments returns the bodies of the comments posted, in order.
func (s *GitHub) Comments() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.comments...)
}

// State returns the issue's state: "open" or "closed".
func (s *GitHub) State() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state
}
