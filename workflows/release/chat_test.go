package release

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/signetbus/signet/workflows/release/releasetest"
)

// The chat tests post to releasetest.Chat, a receiver speaking the Slack
// incoming-webhook format (Slack cannot run here).

func TestWebhookPostsInOrderAndEscapes(t *testing.T) {
	srv := releasetest.NewChat(t)
	n, err := NewNotifier(ChatConfig{WebhookURLFile: releasetest.WriteSecret(t, "hook", srv.URL())}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, m := range []string{"one", "two <!channel> & <https://evil|click>"} {
		if err := n.Notify(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	got := srv.Texts()
	want := []string{"one", "two &lt;!channel&gt; &amp; &lt;https://evil|click&gt;"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("texts %q, want %q", got, want)
	}
}

func TestWebhookErrorsDoNotLeakTheURL(t *testing.T) {
	srv := releasetest.NewChat(t)
	srv.SetStatus(410)
	w, err := NewWebhook(srv.URL(), nil)
	if err != nil {
		t.Fatal(err)
	}
	err = w.Notify(context.Background(), "x")
	var api *APIError
	if !errors.As(err, &api) || api.Status != 410 || !strings.Contains(api.Message, "channel_is_archived") {
		t.Fatalf("error %v, want a 410 APIError", err)
	}
	srv.Close() // now nothing listens
	err = w.Notify(context.Background(), "x")
	if err == nil {
		t.Fatal("post to a closed server succeeded")
	}
	if strings.Contains(err.Error(), "s3cr3t") {
		t.Errorf("error leaks the webhook URL: %v", err)
	}
}

func TestNewNotifierRejects(t *testing.T) {
	tests := []struct {
		name string
		cfg  ChatConfig
	}{
		{"http remote", ChatConfig{WebhookURL: "http://chat.example.test/hooks/s3cr3t"}},
		{"ftp", ChatConfig{WebhookURL: "ftp://chat.example.test/s3cr3t"}},
		{"query", ChatConfig{WebhookURL: "https://chat.example.test/hooks?token=s3cr3t"}},
		{"missing file", ChatConfig{WebhookURLFile: "/nonexistent/s3cr3t"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewNotifier(tt.cfg, nil)
			if err == nil {
				t.Fatal("accepted")
			}
			if tt.cfg.WebhookURL != "" && strings.Contains(err.Error(), "s3cr3t") {
				t.Errorf("error repeats the webhook url: %v", err)
			}
		})
	}
	if n, err := NewNotifier(ChatConfig{}, nil); n != nil || err != nil {
		t.Errorf("empty config: %v %v, want no notifier", n, err)
	}
}
