package release

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Notifier posts a message to the team's chat.
type Notifier interface {
	Notify(ctx context.Context, text string) error
}

// chatMaxText keeps a message below Slack's 40000-character limit.
const chatMaxText = 35000

// Webhook posts to a Slack-compatible incoming webhook: a JSON {"text": ...}
// POST, which Slack, Mattermost and Rocket.Chat all accept.
type Webhook struct {
	url string
	hc  *http.Client
}

var _ Notifier = (*Webhook)(nil)

// NewWebhook checks the webhook URL (https, or http on a loopback address).
// hc nil means a client with a 30s timeout.
func NewWebhook(webhookURL string, hc *http.Client) (*Webhook, error) {
	u, err := checkBaseURL("chat webhook", webhookURL)
	if err != nil {
		// The URL is a secret: say what is wrong without repeating it.
		return nil, errors.New("release: chat webhook url must be https (http only on a loopback address), without credentials, query or fragment")
	}
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	return &Webhook{url: u.String(), hc: hc}, nil
}

// NewNotifier builds the chat notifier from config, reading the webhook URL
// file when one is named. It returns nil, nil when chat is not configured.
func NewNotifier(cfg ChatConfig, hc *http.Client) (Notifier, error) {
	if !cfg.Enabled() {
		return nil, nil
	}
	u := cfg.WebhookURL
	if cfg.WebhookURLFile != "" {
		var err error
		if u, err = secret("chat webhook url", cfg.WebhookURLFile, "", nil); err != nil {
			return nil, fmt.Errorf("release: %w", err)
		}
	}
	return NewWebhook(u, hc)
}

// Notify posts text. Slack's control characters &, < and > are escaped so
// that a ticket title cannot ping a channel (<!channel>) or forge a link.
func (w *Webhook) Notify(ctx context.Context, text string) error {
	text = slackEscaper.Replace(truncateMiddle(text, chatMaxText))
	return call(ctx, w.hc, "webhook", "post message", http.MethodPost, w.url, nil,
		map[string]string{"text": text}, nil, http.StatusOK, http.StatusCreated, http.StatusNoContent)
}

var slackEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")
