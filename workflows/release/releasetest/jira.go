package releasetest

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
)

// JiraOptions describe the one issue a [Jira] server holds.
type JiraOptions struct {
	// Key is the issue key, such as "OPS-7".
	Key string
	// Auth is the exact Authorization header accepted: [Basic] of a user
	// and an API token, or "Bearer " and a personal access token. Any
	// other gets 401 with Jira's message.
	Auth string
	// Summary is the issue's title.
	Summary string
	// Description is a string, or nil for the JSON null Jira sends for an
	// empty description.
	Description any
	// Transitions are those the issue offers; nil means
	// [DefaultTransitions].
	Transitions []JiraTransition
}

// JiraTransition is one workflow transition as Jira lists it.
type JiraTransition struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// DefaultTransitions are the transitions of Jira's default workflow that a
// release sees: "In Progress" (11) and "Done" (31).
var DefaultTransitions = []JiraTransition{{"11", "In Progress"}, {"31", "Done"}}

// Jira serves one issue through the Jira REST API v2 endpoints a release
// uses: GET issue (fields summary and description), POST comment, GET and
// POST transitions. It records the comments and the transition ids posted.
// Its URL field is the base URL to configure.
type Jira struct {
	*httptest.Server
	t    testing.TB
	opts JiraOptions

	mu       sync.Mutex
	comments []string
	posted   []string
	failGets int // answer this many more GETs with failWith
	failWith int
	gets     int
}

// NewJira starts a Jira server for opts.
func NewJira(t testing.TB, opts JiraOptions) *Jira {
	if opts.Transitions == nil {
		opts.Transitions = DefaultTransitions
	}
	s := &Jira{t: t, opts: opts}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

// FailGets answers the next n GET requests with status, as a proxy in
// front of Jira does during a restart (502, 503).
func (s *Jira) FailGets(n, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failGets, s.failWith = n, status
}

// Gets returns how many GET requests reached the server.
func (s *Jira) Gets() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gets
}

func (s *Jira) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.Method == http.MethodGet {
		s.gets++
		if s.failGets > 0 {
			s.failGets--
			http.Error(w, "<html>Bad Gateway</html>", s.failWith)
			return
		}
	}
	if r.Header.Get("Authorization") != s.opts.Auth {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, `{"errorMessages":["You are not authenticated. Authentication required to perform this operation."],"errors":{}}`)
		return
	}
	issue := "/rest/api/2/issue/" + s.opts.Key
	switch {
	case r.Method == http.MethodGet && r.URL.Path == issue:
		if got := r.URL.Query().Get("fields"); got != "summary,description" {
			s.t.Errorf("jira: fields=%q, want summary,description", got)
		}
		WriteJSON(w, http.StatusOK, map[string]any{"id": "10001", "key": s.opts.Key,
			"fields": map[string]any{"summary": s.opts.Summary, "description": s.opts.Description}})
	case r.Method == http.MethodPost && r.URL.Path == issue+"/comment":
		var in struct {
			Body string `json:"body"`
		}
		if !decodeJSON(w, r, &in) {
			return
		}
		s.comments = append(s.comments, in.Body)
		WriteJSON(w, http.StatusCreated, map[string]any{"id": fmt.Sprint(len(s.comments)), "body": in.Body})
	case r.Method == http.MethodGet && r.URL.Path == issue+"/transitions":
		WriteJSON(w, http.StatusOK, map[string]any{"expand": "transitions", "transitions": s.opts.Transitions})
	case r.Method == http.MethodPost && r.URL.Path == issue+"/transitions":
		var in struct {
			Transition struct {
				ID string `json:"id"`
			} `json:"transition"`
		}
		if !decodeJSON(w, r, &in) {
			return
		}
		known := false
		for _, tr := range s.opts.Transitions {
			known = known || tr.ID == in.Transition.ID
		}
		if !known {
			WriteJSON(w, http.StatusBadRequest, map[string]any{"errorMessages": []string{"Transition id '" + in.Transition.ID + "' is not valid for this issue."}})
			return
		}
		s.posted = append(s.posted, in.Transition.ID)
		w.WriteHeader(http.StatusNoContent)
	default:
		WriteJSON(w, http.StatusNotFound, map[string]any{"errorMessages": []string{"Issue does not exist or you do not have permission to see it."}})
	}
}

// Comments returns the bodies of the comments posted, in order.
func (s *Jira) Comments() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.comments...)
}

// Transitions returns the ids of the transitions posted, in order.
func (s *Jira) Transitions() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.posted...)
}
