package stage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/signetbus/signet/bus"
	"github.com/signetbus/signet/internal/keys"
	"github.com/signetbus/signet/workflows"
	"github.com/signetbus/signet/workflows/buscaller"
	"github.com/signetbus/signet/workflows/deploy"
)

// Operator is a signed client of the stage: the lab's operator key (role
// admin), its known_hosts, the registry, a workflows caller over the bus
// and the run store on the broker.
type Operator struct {
	Conn   *nats.Conn
	Client *bus.Client
	Caller *buscaller.Caller
	Store  workflows.Store
}

// Operator connects to the stage's broker as the lab operator.
func (s *Stage) Operator(ctx context.Context) (*Operator, error) {
	keyPath := filepath.Join(s.Lab.Dir, "operator_key")
	signer, err := keys.LoadSigner(keyPath, nil)
	if err != nil {
		return nil, fmt.Errorf("stage operator: %w", err)
	}
	// In certificate mode (Options.CA) the hosts trust only certificates.
	if signer, err = keys.WithCertificate(signer, keyPath); err != nil {
		return nil, fmt.Errorf("stage operator: %w", err)
	}
	known, err := keys.LoadKnownHosts(filepath.Join(s.Lab.Dir, "known_hosts"))
	if err != nil {
		return nil, fmt.Errorf("stage operator: %w", err)
	}
	nc, err := nats.Connect(s.Lab.Broker.ClientURL(), nats.Name("signet stage operator"))
	if err != nil {
		return nil, fmt.Errorf("stage operator: %w", err)
	}
	op := &Operator{Conn: nc}
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	reg, err := bus.OpenRegistry(rctx, nc, s.Lab.Collective)
	if err != nil && !errors.Is(err, bus.ErrNoRegistry) {
		nc.Close()
		return nil, fmt.Errorf("stage operator: %w", err)
	}
	if op.Client, err = bus.NewClient(bus.ClientConfig{Conn: nc, Collective: s.Lab.Collective, Signer: signer, User: "operator",
		HostKeys: known, Registry: reg, Logger: s.log}); err != nil {
		nc.Close()
		return nil, fmt.Errorf("stage operator: %w", err)
	}
	op.Caller = &buscaller.Caller{Client: op.Client, Registry: reg}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("stage operator: %w", err)
	}
	if op.Store, err = workflows.NewKVStore(ctx, js, workflows.KVConfig{Signer: bus.KeySigner(signer)}); err != nil { // run state is trusted by key
		nc.Close()
		return nil, fmt.Errorf("stage operator: %w", err)
	}
	return op, nil
}

// Close disconnects.
func (o *Operator) Close() { o.Conn.Close() }

// Deploy rolls the stage's app to version with deploy.Run over the signed
// bus, writing the text progress and recap to out. soft, when closed,
// stops after the hosts in progress; cancelling ctx stops at once. The
// lock names the user the requests carry and the lab's client.yaml sets
// ("operator"), so a deploy from --keep that meets it names the same user.
func (s *Stage) Deploy(ctx context.Context, soft <-chan struct{}, op *Operator, version string, out io.Writer) (*workflows.Recap, error) {
	return deploy.Run(ctx, soft, deploy.Options{AppFile: s.AppFile, Version: version, Env: s.Env, Yes: true,
		Output: out, Format: "text", Caller: op.Caller, Store: op.Store, User: "operator", Log: s.log})
}
