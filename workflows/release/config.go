package release

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
)

// Config is the `release:` section of the operator's config (YAML). It is
// per environment profile: dev, DR and prod each carry their own section, so
// a dev run never reads production credentials. Secrets are never written
// in it: each is read, only when needed, from a file or an environment
// variable the config names.
//
//	release:
//	  jira:
//	    url: https://jira.example.com
//	    user: release-bot@example.com
//	    token_file: ~/.config/signet/jira.token
//	    done_transition: Done
//	  github:
//	    url: https://github.example.com/api/v3
//	    token_env: SIGNET_GITHUB_TOKEN
//	  chat:
//	    webhook_url_file: ~/.config/signet/chat.webhook
//	  mail:
//	    addr: smtp.example.com:587
//	    from: signet@example.com
//	    to: [releases@example.com]
//	    username: signet
//	    password_file: ~/.config/signet/smtp.password
type Config struct {
	// Jira is how to reach Jira for "jira:KEY-123" tickets.
	Jira JiraConfig `yaml:"jira"`
	// GitHub is how to reach GitHub (or GitHub Enterprise) for
	// "github:owner/repo#42" tickets.
	GitHub GitHubConfig `yaml:"github"`
	// Chat is the incoming webhook the release reports to. Empty: no chat.
	Chat ChatConfig `yaml:"chat"`
	// Mail is the SMTP relay the release log is mailed through. Empty: no mail.
	Mail MailConfig `yaml:"mail"`
	// RequireDoneIn names another environment profile (such as "dr")
	// where the same manifest must have finished before a release here
	// may start: `signet release` reads the signed record of that release
	// from that environment's broker. Set it in the prod profile.
	RequireDoneIn string `yaml:"require_done_in"`
}

// JiraConfig configures Jira tickets (REST API v2).
type JiraConfig struct {
	// URL is the Jira base URL, such as https://jira.example.com (Jira
	// Cloud: https://example.atlassian.net). Must be https, except on a
	// loopback address.
	URL string `yaml:"url"`
	// User is the account for basic auth with an API token (Jira Cloud).
	// Leave it empty to send the token as a bearer personal access token
	// (Jira Data Center / Server).
	User string `yaml:"user"`
	// TokenFile is a file holding the API token or PAT (one line; must not
	// be world-readable). "~/" is the home directory.
	TokenFile string `yaml:"token_file"`
	// TokenEnv names an environment variable holding the token, used when
	// TokenFile is empty.
	TokenEnv string `yaml:"token_env"`
	// DoneTransition is the name of the workflow transition that closes the
	// issue after a successful release; default "Done". Matched without
	// regard to case.
	DoneTransition string `yaml:"done_transition"`
}

// GitHubConfig configures GitHub issue tickets (REST API).
type GitHubConfig struct {
	// URL is the API base URL; default https://api.github.com. GitHub
	// Enterprise Server: https://HOST/api/v3. Must be https, except on a
	// loopback address.
	URL string `yaml:"url"`
	// TokenFile is a file holding a token allowed to read and write issues
	// (one line; must not be world-readable).
	TokenFile string `yaml:"token_file"`
	// TokenEnv names an environment variable holding the token, used when
	// TokenFile is empty.
	TokenEnv string `yaml:"token_env"`
}

// ChatConfig configures the Slack-compatible incoming webhook (Slack,
// Mattermost and Rocket.Chat accept the same {"text": ...} POST).
type ChatConfig struct {
	// WebhookURL is the incoming webhook URL. It holds a secret token:
	// prefer WebhookURLFile.
	WebhookURL string `yaml:"webhook_url"`
	// WebhookURLFile is a file holding the webhook URL (one line; must not be
	// world-readable).
	WebhookURLFile string `yaml:"webhook_url_file"`
}

// MailConfig configures the SMTP relay that receives the release log.
type MailConfig struct {
	// Addr is the relay as host:port, usually port 587 (submission).
	Addr string `yaml:"addr"`
	// From is the envelope and header sender address.
	From string `yaml:"from"`
	// To lists the recipients.
	To []string `yaml:"to"`
	// Username is the PLAIN auth user. Empty: no authentication.
	Username string `yaml:"username"`
	// PasswordFile is a file holding the PLAIN auth password (one line; must
	// not be world-readable).
	PasswordFile string `yaml:"password_file"`
	// PasswordEnv names an environment variable holding the password, used
	// when PasswordFile is empty.
	PasswordEnv string `yaml:"password_env"`
	// StartTLS upgrades the connection with STARTTLS before authenticating;
	// default true. It may be turned off only for a relay on a loopback
	// address (a local MTA).
	StartTLS *bool `yaml:"starttls"`
	// CAFile is a PEM bundle to verify the relay's certificate against
	// instead of the system roots (an internal CA).
	CAFile string `yaml:"ca_file"`
}

// Enabled reports whether chat is configured.
func (c ChatConfig) Enabled() bool { return c.WebhookURL != "" || c.WebhookURLFile != "" }

// Enabled reports whether mail is configured.
func (c MailConfig) Enabled() bool { return c.Addr != "" }

// Resolve makes relative file paths relative to dir, the directory of the
// config file.
func (c *Config) Resolve(dir string) {
	abs := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) && !strings.HasPrefix(*p, "~") {
			*p = filepath.Join(dir, *p)
		}
	}
	abs(&c.Jira.TokenFile)
	abs(&c.GitHub.TokenFile)
	abs(&c.Chat.WebhookURLFile)
	abs(&c.Mail.PasswordFile)
	abs(&c.Mail.CAFile)
}

// Overlay applies an environment profile's release section: when the
// profile sets any of it, it replaces the base section whole, so a dev run
// never inherits (and never needs) another environment's URLs or
// credentials. Share settings between profiles with YAML anchors.
func (c *Config) Overlay(p *Config) {
	if p == nil || p.isZero() {
		return
	}
	*c = *p
}

func (c *Config) isZero() bool {
	return c.RequireDoneIn == "" && c.Jira == (JiraConfig{}) && c.GitHub == (GitHubConfig{}) && c.Chat == (ChatConfig{}) &&
		c.Mail.Addr == "" && c.Mail.From == "" && len(c.Mail.To) == 0 && c.Mail.Username == "" &&
		c.Mail.PasswordFile == "" && c.Mail.PasswordEnv == "" && c.Mail.StartTLS == nil && c.Mail.CAFile == ""
}

// TicketConfig returns what OpenTicket needs from this config. No secret is
// read until a ticket of that kind is opened.
func (c *Config) TicketConfig() TicketConfig {
	return TicketConfig{Jira: c.Jira, GitHub: c.GitHub}
}

// secret reads a secret from a file or, failing that, an environment
// variable. what names it in errors; the value never appears in one.
func secret(what, file, env string, lookupEnv func(string) (string, bool)) (string, error) {
	switch {
	case file != "":
		path, err := expandHome(file)
		if err != nil {
			return "", fmt.Errorf("%s file: %w", what, err)
		}
		st, err := os.Stat(path)
		if err != nil {
			return "", fmt.Errorf("%s file: %w", what, err)
		}
		if st.Mode().Perm()&0o004 != 0 {
			return "", fmt.Errorf("%s file %s is world-readable (mode %04o), expected chmod 600", what, path, st.Mode().Perm())
		}
		if st.Size() > 64<<10 {
			return "", fmt.Errorf("%s file %s is %d bytes, expected one line", what, path, st.Size())
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return "", fmt.Errorf("%s file: %w", what, err)
		}
		v := strings.TrimRight(string(b), "\r\n")
		if v == "" || strings.ContainsAny(v, "\r\n") {
			return "", fmt.Errorf("%s file %s: expected exactly one non-empty line", what, path)
		}
		return v, nil
	case env != "":
		if lookupEnv == nil {
			lookupEnv = os.LookupEnv
		}
		v, ok := lookupEnv(env)
		if !ok || v == "" {
			return "", fmt.Errorf("%s: environment variable %s is not set", what, env)
		}
		return v, nil
	}
	return "", fmt.Errorf("%s: no file or environment variable configured", what)
}

func expandHome(p string) (string, error) {
	if p == "~" || strings.HasPrefix(p, "~/") {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", err
		}
		return filepath.Join(home, p[1:]), nil
	}
	return p, nil
}

// checkBaseURL accepts an https URL, or http on a loopback address, without
// credentials, query or fragment.
func checkBaseURL(what, raw string) (*url.URL, error) {
	if raw == "" {
		return nil, fmt.Errorf("%s: url is not configured", what)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%s url: %w", what, err)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Host == "" {
		return nil, fmt.Errorf("%s url %q: expected scheme://host[/path] without credentials, query or fragment", what, u.Redacted())
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !isLoopback(u.Hostname()) {
			return nil, fmt.Errorf("%s url %q: http is allowed only on a loopback address, expected https", what, u.Redacted())
		}
	default:
		return nil, fmt.Errorf("%s url %q: expected https", what, u.Redacted())
	}
	u.Path = strings.TrimRight(u.Path, "/")
	return u, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
