package redact

import (
	"context"
	"fmt"
	"log/slog"
)

// handler wraps a slog.Handler so that nothing secret reaches it.
type handler struct {
	next    slog.Handler
	secrets []string
}

// NewHandler returns a handler that redacts every record before next sees
// it: the message and every string or error attribute go through String
// and Scrub(secrets), attributes whose keys look secret are masked, and
// groups and With attributes are treated alike. signetd wraps its logger
// in one, and gives each plugin run one that also knows the values of the
// request's sensitive parameters.
func NewHandler(next slog.Handler, secrets []string) slog.Handler {
	if h, ok := next.(*handler); ok {
		return &handler{next: h.next, secrets: append(append([]string(nil), h.secrets...), secrets...)}
	}
	return &handler{next: next, secrets: secrets}
}

// Logger wraps log in NewHandler with no known secrets. A nil log stays nil.
func Logger(log *slog.Logger) *slog.Logger {
	if log == nil {
		return nil
	}
	if _, ok := log.Handler().(*handler); ok {
		return log
	}
	return slog.New(NewHandler(log.Handler(), nil))
}

func (h *handler) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }

func (h *handler) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, h.text(r.Message), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(h.attr(a))
		return true
	})
	return h.next.Handle(ctx, out)
}

func (h *handler) WithAttrs(as []slog.Attr) slog.Handler {
	red := make([]slog.Attr, len(as))
	for i, a := range as {
		red[i] = h.attr(a)
	}
	return &handler{next: h.next.WithAttrs(red), secrets: h.secrets}
}

func (h *handler) WithGroup(name string) slog.Handler {
	return &handler{next: h.next.WithGroup(name), secrets: h.secrets}
}

func (h *handler) text(s string) string { return Scrub(String(s), h.secrets) }

func (h *handler) attr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	if SecretName(a.Key) && v.Kind() != slog.KindGroup {
		return slog.String(a.Key, Mask)
	}
	switch v.Kind() {
	case slog.KindString:
		return slog.String(a.Key, h.text(v.String()))
	case slog.KindGroup:
		g := v.Group()
		red := make([]any, len(g))
		for i, ga := range g {
			red[i] = h.attr(ga)
		}
		return slog.Group(a.Key, red...)
	case slog.KindAny:
		switch x := v.Any().(type) {
		case error:
			return slog.String(a.Key, h.text(x.Error()))
		case fmt.Stringer:
			return slog.String(a.Key, h.text(x.String()))
		case map[string]any, []any, []string, map[string]string:
			return slog.Any(a.Key, Value(x))
		}
	}
	return slog.Attr{Key: a.Key, Value: v}
}
