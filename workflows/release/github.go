package release

import (
	"context"
	"fmt"
	"net/http"
	"strings"
)

// githubMaxComment is below GitHub's 65536-character comment limit.
const githubMaxComment = 60000

// githubTicket is a GitHub (or GitHub Enterprise) issue.
type githubTicket struct {
	issue string // {base}/repos/{owner}/{repo}/issues/{n}
	name  string // owner/repo#n
	token string
	hc    *http.Client
}

func openGitHub(ref string, cfg TicketConfig, hc *http.Client) (Ticket, error) {
	repo, num, ok := strings.Cut(ref, "#")
	owner, name, ok2 := strings.Cut(repo, "/")
	if !ok || !ok2 || !ghOwnerRe.MatchString(owner) || !ghRepoRe.MatchString(name) ||
		name == "." || name == ".." || !ghNumberRe.MatchString(num) {
		return nil, fmt.Errorf("release: github issue %q is not valid, expected owner/repo#42", ref)
	}
	base := cfg.GitHub.URL
	if base == "" {
		base = "https://api.github.com"
	}
	u, err := checkBaseURL("github", base)
	if err != nil {
		return nil, fmt.Errorf("release: %w", err)
	}
	token, err := secret("github token", cfg.GitHub.TokenFile, cfg.GitHub.TokenEnv, cfg.LookupEnv)
	if err != nil {
		return nil, fmt.Errorf("release: %w", err)
	}
	return &githubTicket{
		issue: fmt.Sprintf("%s/repos/%s/%s/issues/%s", u.String(), owner, name, num),
		name:  ref,
		token: token,
		hc:    hc,
	}, nil
}

func (t *githubTicket) header() http.Header {
	return http.Header{
		"Authorization":        {"Bearer " + t.token},
		"Accept":               {"application/vnd.github+json"},
		"X-Github-Api-Version": {"2022-11-28"},
	}
}

func (t *githubTicket) Fetch(ctx context.Context) (string, string, error) {
	var issue struct {
		Title       string  `json:"title"`
		Body        *string `json:"body"`
		PullRequest any     `json:"pull_request"`
	}
	err := call(ctx, t.hc, "github", "fetch "+t.name, http.MethodGet, t.issue, t.header(), nil, &issue, http.StatusOK)
	if err != nil {
		return "", "", err
	}
	if issue.PullRequest != nil {
		return "", "", fmt.Errorf("github: %s is a pull request, expected an issue", t.name)
	}
	body := ""
	if issue.Body != nil {
		body = *issue.Body
	}
	return issue.Title, body, nil
}

func (t *githubTicket) Comment(ctx context.Context, text string) error {
	in := map[string]string{"body": truncateMiddle(text, githubMaxComment)}
	return call(ctx, t.hc, "github", "comment on "+t.name, http.MethodPost,
		t.issue+"/comments", t.header(), in, nil, http.StatusCreated)
}

func (t *githubTicket) Close(ctx context.Context) error {
	in := map[string]string{"state": "closed", "state_reason": "completed"}
	return call(ctx, t.hc, "github", "close "+t.name, http.MethodPatch, t.issue, t.header(), in, nil, http.StatusOK)
}

func (t *githubTicket) preformat(log string) string {
	// A fence longer than any backtick run in the log cannot be closed by it.
	fence := "```"
	for strings.Contains(log, fence) {
		fence += "`"
	}
	return fence + "\n" + log + "\n" + fence
}
