package redact

import (
	"context"
	"log/slog"
	"testing"
)

// BenchmarkString is the cost redaction adds to each reason, summary,
// error and log attribute.
func BenchmarkString(b *testing.B) {
	for name, s := range map[string]string{
		"plain":  "invalid parameter \"package\" for update: \"nginx;\" does not match [a-z0-9.+-]+",
		"url":    "http://127.0.0.1:8080/health?token=abc&x=1: want status 200, got 503 after 3 attempts",
		"secret": `backend said: {"password": "hunter2"} for user=bob`,
	} {
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				String(s)
			}
		})
	}
}

// BenchmarkHandler is the cost of one redacted log record (the host's
// "running action" line) over the same record unredacted.
func BenchmarkHandler(b *testing.B) {
	for name, h := range map[string]slog.Handler{
		"bare":     slog.NewJSONHandler(discard{}, nil),
		"redacted": NewHandler(slog.NewJSONHandler(discard{}, nil), nil),
	} {
		log := slog.New(h).With("request_id", "0123456789abcdef0123456789abcdef", "agent", "package", "action", "update", "sender", "alice")
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				log.LogAttrs(context.Background(), slog.LevelInfo, "running action")
			}
		})
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
