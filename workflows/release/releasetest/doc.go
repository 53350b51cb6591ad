// Package releasetest holds the outside world of a release for tests: a
// Jira issue, a GitHub issue, a chat webhook and a mail server, all on
// 127.0.0.1 and all stopped by t.Cleanup.
//
// Jira, GitHub and Slack cannot run here, so [Jira], [GitHub] and [Chat]
// are httptest servers speaking their documented formats: the Jira REST
// API v2 (issue, comment, transitions), the GitHub REST issues API (issue,
// comments, PATCH state) and the Slack incoming-webhook JSON {"text": ...}.
// They check credentials exactly, refuse what the real services refuse,
// and record what they accept. The SMTP server, [Mail], is a real one built
// on github.com/emersion/go-smtp: it offers STARTTLS with a certificate
// made by [SelfSigned], and PLAIN auth only after STARTTLS.
//
// It is used by the tests of package release and by the end-to-end tests
// in test/deploy.
package releasetest
