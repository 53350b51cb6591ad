package ship

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/signetbus/signet/internal/audit"
)

// ErrNoStream means the collective has no audit stream: no host has
// shipped yet.
var ErrNoStream = errors.New("ship: no audit stream on this broker: no signetd has shipped its audit log yet (signetd ships unless its config sets audit.ship: false; the lab does not ship)")

// Query selects stored lines.
type Query struct {
	// Hosts limits the read to these hosts' subjects; empty: every host.
	Hosts []string
	// Since starts the read at this time (the time the broker stored the
	// line); zero: from the start.
	Since time.Time
}

// Read returns the stream's lines in stored order, each with its host
// (from the subject) and its place ("stream message N").
func Read(ctx context.Context, js jetstream.JetStream, collective string, q Query) ([]audit.Line, error) {
	st, info, err := streamInfo(ctx, js, collective)
	if err != nil {
		return nil, err
	}
	if info.State.Msgs == 0 {
		return nil, nil
	}
	cfg := jetstream.OrderedConsumerConfig{}
	for _, h := range q.Hosts {
		cfg.FilterSubjects = append(cfg.FilterSubjects, Subject(collective, h))
	}
	if !q.Since.IsZero() {
		cfg.DeliverPolicy = jetstream.DeliverByStartTimePolicy
		cfg.OptStartTime = &q.Since
	}
	cons, err := st.OrderedConsumer(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("ship: read audit stream: %w", err)
	}
	prefix := collective + ".audit."
	var out []audit.Line
	pending := cons.CachedInfo().NumPending
	for pending > 0 {
		batch, err := cons.Fetch(int(min(pending, 500)), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return nil, fmt.Errorf("ship: read audit stream: %w", err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			md, err := m.Metadata()
			if err != nil {
				return nil, fmt.Errorf("ship: read audit stream: %w", err)
			}
			out = append(out, audit.Line{Raw: m.Data(), Host: strings.TrimPrefix(m.Subject(), prefix),
				Where: fmt.Sprintf("stream message %d", md.Sequence.Stream)})
			pending = md.NumPending
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, context.DeadlineExceeded) {
			return nil, fmt.Errorf("ship: read audit stream: %w", err)
		}
		if n == 0 {
			return nil, errors.New("ship: read audit stream: the broker sent nothing for 5s; try again")
		}
		if err := ctx.Err(); err != nil {
			return out, err
		}
	}
	return out, nil
}

// streamInfo opens the collective's audit stream and reads its state.
func streamInfo(ctx context.Context, js jetstream.JetStream, collective string) (jetstream.Stream, *jetstream.StreamInfo, error) {
	st, err := js.Stream(ctx, Stream(collective))
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, nil, ErrNoStream
	}
	if err != nil {
		return nil, nil, fmt.Errorf("ship: audit stream: %w", err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("ship: audit stream: %w", err)
	}
	return st, info, nil
}

// Lost reports what the stream's own state says was removed: messages
// deleted from the middle or the end (JetStream counts them) or from the
// start (a purge, or a retention limit). Nil when nothing was. It catches
// a cut tail that no later line reveals yet.
func Lost(ctx context.Context, js jetstream.JetStream, collective string) (*audit.Finding, error) {
	_, info, err := streamInfo(ctx, js, collective)
	if err != nil {
		return nil, err
	}
	s := info.State
	if s.NumDeleted == 0 && s.FirstSeq <= 1 {
		return nil, nil
	}
	return &audit.Finding{Host: "(stream " + Stream(collective) + ")", Kind: audit.FindingDeleted, Where: "stream state",
		Detail: fmt.Sprintf("the broker removed messages: %d deleted between stream messages %d and %d, and %d before message %d", s.NumDeleted, s.FirstSeq, s.LastSeq, s.FirstSeq-1, s.FirstSeq)}, nil
}
