package lab

import (
	"context"

	"github.com/nats-io/nats.go"

	"github.com/signetbus/signet/bus"
)

func (l *Lab) registered(ctx context.Context, nc *nats.Conn) (int, error) {
	reg, err := bus.OpenRegistry(ctx, nc, l.Collective)
	if err != nil {
		return 0, err
	}
	list, err := reg.List(ctx)
	return len(list), err
}
