package release

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/signetbus/signet/workflows/release/releasetest"
)

// These tests run the ticket backends against httptest servers speaking
// the documented Jira REST v2 and GitHub REST formats (package
// releasetest): the real services cannot run here.

func TestJiraBasicAuth(t *testing.T) {
	ctx := context.Background()
	srv := releasetest.NewJira(t, releasetest.JiraOptions{Key: "OPS-123", Auth: releasetest.Basic("bot@example.test", "jira-api-token"), Summary: "Release 7", Description: "web 1.0\napi=2.0"})
	tk, err := OpenTicket("jira:OPS-123", TicketConfig{Jira: JiraConfig{
		URL: srv.URL + "/", User: "bot@example.test", TokenFile: releasetest.WriteSecret(t, "jira.token", "jira-api-token"),
	}})
	if err != nil {
		t.Fatal(err)
	}
	title, body, err := tk.Fetch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if title != "Release 7" || body != "web 1.0\napi=2.0" {
		t.Errorf("fetched %q %q", title, body)
	}
	if err := tk.Comment(ctx, "hello from signet"); err != nil {
		t.Fatal(err)
	}
	if err := tk.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if got := srv.Comments(); len(got) != 1 || got[0] != "hello from signet" {
		t.Errorf("comments %q", got)
	}
	if got := srv.Transitions(); len(got) != 1 || got[0] != "31" {
		t.Errorf("transitions posted %q, want [31] (Done)", got)
	}
}

func TestJiraBearerPATAndNullDescription(t *testing.T) {
	srv := releasetest.NewJira(t, releasetest.JiraOptions{Key: "OPS-9", Auth: "Bearer pat-token", Summary: "Empty"}) // Description nil: Jira sends null
	tk, err := OpenTicket("jira:OPS-9", TicketConfig{
		Jira:      JiraConfig{URL: srv.URL, TokenEnv: "JIRA_PAT"},
		LookupEnv: func(k string) (string, bool) { return map[string]string{"JIRA_PAT": "pat-token"}[k], k == "JIRA_PAT" },
	})
	if err != nil {
		t.Fatal(err)
	}
	title, body, err := tk.Fetch(context.Background())
	if err != nil || title != "Empty" || body != "" {
		t.Fatalf("fetch: %q %q %v", title, body, err)
	}
}

func TestJiraCustomTransition(t *testing.T) {
	srv := releasetest.NewJira(t, releasetest.JiraOptions{Key: "OPS-1", Auth: "Bearer t", Summary: "x", Description: "a 1",
		Transitions: []releasetest.JiraTransition{{ID: "5", Name: "Start"}, {ID: "71", Name: "Released"}}})
	cfg := TicketConfig{Jira: JiraConfig{URL: srv.URL, TokenFile: releasetest.WriteSecret(t, "tok", "t"), DoneTransition: "released"}}
	tk, err := OpenTicket("jira:OPS-1", cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := tk.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := srv.Transitions(); len(got) != 1 || got[0] != "71" {
		t.Errorf("transitions posted %q, want [71]", got)
	}

	cfg.Jira.DoneTransition = "" // default "Done" is not offered
	tk, _ = OpenTicket("jira:OPS-1", cfg)
	err = tk.Close(context.Background())
	if err == nil || !strings.Contains(err.Error(), `no transition named "Done"`) || !strings.Contains(err.Error(), `"Released"`) {
		t.Errorf("close without Done: %v, want the missing and the available names", err)
	}
}

func TestJiraWrongTokenIsAnAPIErrorWithoutTheToken(t *testing.T) {
	srv := releasetest.NewJira(t, releasetest.JiraOptions{Key: "OPS-1", Auth: "Bearer right", Summary: "x", Description: "a 1"})
	tk, err := OpenTicket("jira:OPS-1", TicketConfig{Jira: JiraConfig{URL: srv.URL, TokenFile: releasetest.WriteSecret(t, "tok", "wrong-token-value")}})
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = tk.Fetch(context.Background())
	var api *APIError
	if !errors.As(err, &api) || api.Status != http.StatusUnauthorized || !strings.Contains(api.Message, "not authenticated") {
		t.Fatalf("error %v, want a 401 APIError with Jira's message", err)
	}
	if strings.Contains(err.Error(), "wrong-token-value") {
		t.Errorf("error leaks the token: %v", err)
	}
}

func TestGitHub(t *testing.T) {
	for _, prefix := range []string{"", "/api/v3"} { // api.github.com and Enterprise
		t.Run("prefix="+prefix, func(t *testing.T) {
			ctx := context.Background()
			srv := releasetest.NewGitHub(t, releasetest.GitHubOptions{Prefix: prefix, Path: "/repos/acme/deploys/issues/42", Token: "gh-token", Title: "Release 8", Body: "web 2.0"})
			cfg := TicketConfig{GitHub: GitHubConfig{URL: srv.URL + prefix, TokenFile: releasetest.WriteSecret(t, "gh", "gh-token")}}
			tk, err := OpenTicket("github:acme/deploys#42", cfg)
			if err != nil {
				t.Fatal(err)
			}
			title, body, err := tk.Fetch(ctx)
			if err != nil || title != "Release 8" || body != "web 2.0" {
				t.Fatalf("fetch: %q %q %v", title, body, err)
			}
			if err := tk.Comment(ctx, "log"); err != nil {
				t.Fatal(err)
			}
			if err := tk.Close(ctx); err != nil {
				t.Fatal(err)
			}
			comments, state := srv.Comments(), srv.State()
			if len(comments) != 1 || comments[0] != "log" || state != "closed" {
				t.Errorf("comments %q state %q", comments, state)
			}
		})
	}
}

func TestGitHubRejectsPullRequestsAndBadTokens(t *testing.T) {
	pr := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		releasetest.WriteJSON(w, 200, map[string]any{"title": "t", "body": "a 1", "pull_request": map[string]any{"url": "x"}})
	}))
	defer pr.Close()
	tk, err := OpenTicket("github:o/r#1", TicketConfig{GitHub: GitHubConfig{URL: pr.URL, TokenFile: releasetest.WriteSecret(t, "gh", "x")}})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := tk.Fetch(context.Background()); err == nil || !strings.Contains(err.Error(), "pull request") {
		t.Errorf("pull request: %v", err)
	}

	srv := releasetest.NewGitHub(t, releasetest.GitHubOptions{Path: "/repos/o/r/issues/1", Token: "right", Title: "t", Body: "a 1"})
	tk, _ = OpenTicket("github:o/r#1", TicketConfig{GitHub: GitHubConfig{URL: srv.URL, TokenFile: releasetest.WriteSecret(t, "gh", "wrong")}})
	_, _, err = tk.Fetch(context.Background())
	var api *APIError
	if !errors.As(err, &api) || api.Status != 401 || api.Message != "Bad credentials" {
		t.Errorf("bad token: %v", err)
	}
}

func TestFileTicket(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "release.txt")
	os.WriteFile(path, []byte("\n# Release 9\n\nweb 1.0\nbad line here\n"), 0o644)
	for _, ref := range []string{path, "file:" + path} {
		tk, err := OpenTicket(ref, TicketConfig{})
		if err != nil {
			t.Fatal(err)
		}
		title, body, err := tk.Fetch(context.Background())
		if err != nil || title != "Release 9" {
			t.Fatalf("fetch: %q %v", title, err)
		}
		// The title line is blanked, so errors give the line in the file.
		_, err = ParseManifest(title, body)
		var pe *ParseError
		if !errors.As(err, &pe) || pe.Line != 5 {
			t.Errorf("parse error %v, want line 5 of the file", err)
		}
		if _, ok := tk.(ReadOnly); !ok {
			t.Error("file ticket does not say it is read-only")
		}
	}
	tk, _ := OpenTicket(path, TicketConfig{})
	if err := tk.Comment(context.Background(), "first"); err != nil {
		t.Fatal(err)
	}
	if err := tk.Comment(context.Background(), "second\n"); err != nil {
		t.Fatal(err)
	}
	if err := tk.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path + ".log")
	if err != nil || string(b) != "first\nsecond\n" {
		t.Errorf("FILE.log = %q, %v", b, err)
	}
	if b, _ := os.ReadFile(path); !strings.Contains(string(b), "web 1.0") {
		t.Error("the ticket file itself was changed")
	}
}

func TestURLTicket(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/r.txt" {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte("Release 10\nweb 1\n"))
	}))
	defer srv.Close()
	tk, err := OpenTicket(srv.URL+"/r.txt?token=sekrit", TicketConfig{})
	if err != nil {
		t.Fatal(err)
	}
	title, body, err := tk.Fetch(context.Background())
	if err != nil || title != "Release 10" || !strings.Contains(body, "web 1") {
		t.Fatalf("fetch %q %q %v", title, body, err)
	}
	if err := tk.Comment(context.Background(), "x"); err != nil {
		t.Error(err)
	}
	if note := tk.(ReadOnly).Note(); strings.Contains(note, "sekrit") || !strings.Contains(note, "read-only") {
		t.Errorf("note %q", note)
	}
	tk, _ = OpenTicket(srv.URL+"/missing", TicketConfig{})
	var api *APIError
	if _, _, err := tk.Fetch(context.Background()); !errors.As(err, &api) || api.Status != 404 {
		t.Errorf("missing: %v", err)
	}
}

func TestOpenTicketRejects(t *testing.T) {
	world := filepath.Join(t.TempDir(), "tok")
	os.WriteFile(world, []byte("t\n"), 0o644)
	twoLines := releasetest.WriteSecret(t, "two", "a\nb")
	jira := JiraConfig{URL: "https://jira.example.test", TokenFile: releasetest.WriteSecret(t, "tok", "t")}
	gh := GitHubConfig{TokenFile: releasetest.WriteSecret(t, "gh", "t")}
	tests := []struct {
		name, ref string
		cfg       TicketConfig
		want      string
	}{
		{"empty", "", TicketConfig{}, "empty ticket reference"},
		{"newline", "jira:OPS-1\n", TicketConfig{Jira: jira}, "control characters"},
		{"jira lowercase key", "jira:ops-1", TicketConfig{Jira: jira}, "expected PROJECT-123"},
		{"jira path in key", "jira:OPS-1/../../x", TicketConfig{Jira: jira}, "expected PROJECT-123"},
		{"jira no url", "jira:OPS-1", TicketConfig{Jira: JiraConfig{TokenFile: jira.TokenFile}}, "url is not configured"},
		{"jira http remote", "jira:OPS-1", TicketConfig{Jira: JiraConfig{URL: "http://jira.example.test", TokenFile: jira.TokenFile}}, "http is allowed only on a loopback"},
		{"jira url with creds", "jira:OPS-1", TicketConfig{Jira: JiraConfig{URL: "https://u:p@jira.example.test", TokenFile: jira.TokenFile}}, "without credentials"},
		{"jira no token", "jira:OPS-1", TicketConfig{Jira: JiraConfig{URL: jira.URL}}, "no file or environment variable"},
		{"jira world-readable token", "jira:OPS-1", TicketConfig{Jira: JiraConfig{URL: jira.URL, TokenFile: world}}, "world-readable"},
		{"jira two-line token", "jira:OPS-1", TicketConfig{Jira: JiraConfig{URL: jira.URL, TokenFile: twoLines}}, "exactly one non-empty line"},
		{"jira unset env", "jira:OPS-1", TicketConfig{Jira: JiraConfig{URL: jira.URL, TokenEnv: "SIGNET_TEST_UNSET_VAR"}}, "is not set"},
		{"jira user with colon", "jira:OPS-1", TicketConfig{Jira: JiraConfig{URL: jira.URL, User: "a:b", TokenFile: jira.TokenFile}}, "must not contain"},
		{"github no number", "github:o/r", TicketConfig{GitHub: gh}, "expected owner/repo#42"},
		{"github no repo", "github:o#1", TicketConfig{GitHub: gh}, "expected owner/repo#42"},
		{"github dotdot repo", "github:o/..#1", TicketConfig{GitHub: gh}, "expected owner/repo#42"},
		{"github leading dash owner", "github:-o/r#1", TicketConfig{GitHub: gh}, "expected owner/repo#42"},
		{"github zero", "github:o/r#0", TicketConfig{GitHub: gh}, "expected owner/repo#42"},
		{"github query injection", "github:o/r#1?x=y", TicketConfig{GitHub: gh}, "expected owner/repo#42"},
		{"github ftp url", "github:o/r#1", TicketConfig{GitHub: GitHubConfig{URL: "ftp://x", TokenFile: gh.TokenFile}}, "expected https"},
		{"url http remote", "http://example.test/r", TicketConfig{}, "only on a loopback"},
		{"url with creds", "https://u:p@example.test/r", TicketConfig{}, "carries credentials"},
		{"leading dash path", "-rf", TicketConfig{}, "starts with '-'"},
		{"empty file ref", "file:", TicketConfig{}, "without a path"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.LookupEnv = func(string) (string, bool) { return "", false }
			_, err := OpenTicket(tt.ref, tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want %q", err, tt.want)
			}
		})
	}
}

func TestTruncateMiddleKeepsHeadAndTail(t *testing.T) {
	s := "HEAD" + strings.Repeat("x", 1000) + "TAIL"
	got := truncateMiddle(s, 200)
	if len(got) > 200 || !strings.HasPrefix(got, "HEAD") || !strings.HasSuffix(got, "TAIL") || !strings.Contains(got, "bytes cut") {
		t.Errorf("truncateMiddle: %d bytes %q", len(got), got)
	}
	if truncateMiddle("short", 200) != "short" {
		t.Error("short text changed")
	}
}
