package release

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
)

// jiraMaxComment is below Jira's 32767-character comment limit.
const jiraMaxComment = 32000

// jiraTicket is a Jira issue, read and written through REST API v2.
type jiraTicket struct {
	base string // https://jira.example.com, no trailing slash
	key  string
	auth string // Authorization header value
	done string
	hc   *http.Client
}

func openJira(key string, cfg TicketConfig, hc *http.Client) (Ticket, error) {
	if !jiraKeyRe.MatchString(key) {
		return nil, fmt.Errorf("release: jira issue key %q is not valid, expected PROJECT-123", key)
	}
	u, err := checkBaseURL("jira", cfg.Jira.URL)
	if err != nil {
		return nil, fmt.Errorf("release: %w", err)
	}
	token, err := secret("jira token", cfg.Jira.TokenFile, cfg.Jira.TokenEnv, cfg.LookupEnv)
	if err != nil {
		return nil, fmt.Errorf("release: %w", err)
	}
	var auth string
	if cfg.Jira.User != "" {
		if strings.ContainsAny(cfg.Jira.User, ":\r\n") {
			return nil, fmt.Errorf("release: jira user %q must not contain ':' or line breaks", cfg.Jira.User)
		}
		auth = "Basic " + base64.StdEncoding.EncodeToString([]byte(cfg.Jira.User+":"+token))
	} else {
		auth = "Bearer " + token
	}
	done := cfg.Jira.DoneTransition
	if done == "" {
		done = "Done"
	}
	return &jiraTicket{base: u.String(), key: key, auth: auth, done: done, hc: hc}, nil
}

func (t *jiraTicket) header() http.Header {
	return http.Header{"Authorization": {t.auth}, "Accept": {"application/json"}}
}

func (t *jiraTicket) issueURL(suffix string) string {
	return t.base + "/rest/api/2/issue/" + t.key + suffix
}

func (t *jiraTicket) Fetch(ctx context.Context) (string, string, error) {
	var issue struct {
		Fields struct {
			Summary     string  `json:"summary"`
			Description *string `json:"description"`
		} `json:"fields"`
	}
	err := call(ctx, t.hc, "jira", "fetch "+t.key, http.MethodGet,
		t.issueURL("?fields=summary,description"), t.header(), nil, &issue, http.StatusOK)
	if err != nil {
		return "", "", err
	}
	body := ""
	if issue.Fields.Description != nil {
		body = *issue.Fields.Description
	}
	return issue.Fields.Summary, body, nil
}

func (t *jiraTicket) Comment(ctx context.Context, text string) error {
	in := map[string]string{"body": truncateMiddle(text, jiraMaxComment)}
	return call(ctx, t.hc, "jira", "comment on "+t.key, http.MethodPost,
		t.issueURL("/comment"), t.header(), in, nil, http.StatusCreated, http.StatusOK)
}

// Close moves the issue through the configured transition (default "Done").
func (t *jiraTicket) Close(ctx context.Context) error {
	var list struct {
		Transitions []struct {
			ID   string `json:"id"`
			Name string `json:"name"`
		} `json:"transitions"`
	}
	err := call(ctx, t.hc, "jira", "list transitions of "+t.key, http.MethodGet,
		t.issueURL("/transitions"), t.header(), nil, &list, http.StatusOK)
	if err != nil {
		return err
	}
	var names []string
	for _, tr := range list.Transitions {
		if strings.EqualFold(tr.Name, t.done) {
			in := map[string]any{"transition": map[string]string{"id": tr.ID}}
			return call(ctx, t.hc, "jira", fmt.Sprintf("transition %s to %q", t.key, tr.Name), http.MethodPost,
				t.issueURL("/transitions"), t.header(), in, nil, http.StatusNoContent, http.StatusOK)
		}
		names = append(names, fmt.Sprintf("%q", tr.Name))
	}
	return fmt.Errorf("jira: close %s: no transition named %q available, found %s (set jira.done_transition)",
		t.key, t.done, strings.Join(names, ", "))
}

func (t *jiraTicket) preformat(log string) string {
	return "{noformat}\n" + strings.ReplaceAll(log, "{noformat}", "{ noformat}") + "\n{noformat}"
}
