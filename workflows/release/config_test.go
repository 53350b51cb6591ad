package release

import (
	"bytes"
	"path/filepath"
	"testing"

	"go.yaml.in/yaml/v3"
)

const configYAML = `
jira:
  url: https://jira.example.com
  user: release-bot@example.com
  token_file: jira.token
  done_transition: Released
github:
  url: https://github.example.com/api/v3
  token_env: SIGNET_GITHUB_TOKEN
chat:
  webhook_url_file: chat.webhook
mail:
  addr: smtp.example.com:587
  from: signet@example.com
  to: [releases@example.com]
  username: signet
  password_file: /etc/signet/smtp.password
  starttls: true
  ca_file: ca.pem
`

func TestConfigDecodesStrictYAML(t *testing.T) {
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader([]byte(configYAML)))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		t.Fatal(err)
	}
	c.Resolve("/home/op/.config/signet")
	if c.Jira.TokenFile != "/home/op/.config/signet/jira.token" || c.Mail.PasswordFile != "/etc/signet/smtp.password" ||
		c.Chat.WebhookURLFile != filepath.Join("/home/op/.config/signet", "chat.webhook") || c.Mail.CAFile != "/home/op/.config/signet/ca.pem" {
		t.Errorf("resolved paths: %+v", c)
	}
	if c.Jira.DoneTransition != "Released" || c.GitHub.TokenEnv != "SIGNET_GITHUB_TOKEN" || *c.Mail.StartTLS != true || c.Mail.To[0] != "releases@example.com" {
		t.Errorf("decoded: %+v", c)
	}

	dec = yaml.NewDecoder(bytes.NewReader([]byte("jira:\n  token: inline-secret\n")))
	dec.KnownFields(true)
	if err := dec.Decode(&Config{}); err == nil {
		t.Error("an inline jira token (unknown key) was accepted")
	}
}

func TestOverlayNeverInheritsAnotherEnvironment(t *testing.T) {
	prod := Config{
		Jira: JiraConfig{URL: "https://jira.example.com", User: "prod-bot", TokenFile: "/prod/jira.token"},
		Mail: MailConfig{Addr: "smtp.prod:587", Username: "prod", PasswordFile: "/prod/smtp"},
		Chat: ChatConfig{WebhookURLFile: "/prod/hook"},
	}
	c := prod
	c.Overlay(&Config{Jira: JiraConfig{URL: "https://jira-dev.example.com", TokenEnv: "DEV_JIRA"}})
	if c.Jira.User != "" || c.Jira.TokenFile != "" || c.Jira.TokenEnv != "DEV_JIRA" {
		t.Errorf("dev jira inherited prod fields: %+v", c.Jira)
	}
	if c.Mail.Enabled() || c.Chat.Enabled() {
		t.Errorf("dev inherited prod mail or chat: %+v", c)
	}
	c = prod
	c.Overlay(&Config{})
	if c.Jira.TokenFile != "/prod/jira.token" {
		t.Error("a profile without a release section changed it")
	}
}
