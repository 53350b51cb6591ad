package agents

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/signetbus/signet/bus"
	"github.com/signetbus/signet/internal/broker"
	"github.com/signetbus/signet/internal/testio"
)

// TestReconnectDelay: signetd retries about every second, as the client
// does (it used to back off linearly to about 3 s, so requests sent just
// after a broker restart reached no one).
func TestReconnectDelay(t *testing.T) {
	for attempts := 1; attempts <= 50; attempts++ {
		for range 20 {
			d := reconnectDelay(attempts)
			if d < reconnectFirst || d >= reconnectCap+reconnectJitter {
				t.Fatalf("attempt %d: delay %s, want within [%s, %s)", attempts, d, reconnectFirst, reconnectCap+reconnectJitter)
			}
			if attempts >= 3 && d < reconnectCap {
				t.Fatalf("attempt %d: delay %s, want at least %s once backed off", attempts, d, reconnectCap)
			}
		}
	}
}

// TestReconnectLogNamesBroker: while the broker is down, signetd logs at
// warn level which broker it cannot reach and why, and logs the
// reconnection.
func TestReconnectLogNamesBroker(t *testing.T) {
	port := freePort(t)
	store := t.TempDir()
	s, err := broker.Start(broker.Config{Port: port, StoreDir: store})
	if err != nil {
		t.Fatal(err)
	}
	var logs testio.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	url := fmt.Sprintf("nats://alice:secret@127.0.0.1:%d", port)
	nc, err := Connect(NATSConfig{URLs: []string{url}}, "test", log)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	eventually(t, func() error {
		if !nc.IsConnected() {
			return fmt.Errorf("not connected")
		}
		return nil
	})
	s.Shutdown()
	s.WaitForShutdown()
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	eventually(t, func() error {
		l := logs.String()
		for _, line := range strings.Split(l, "\n") {
			if strings.Contains(line, "level=WARN") && strings.Contains(line, "cannot reach the broker") &&
				strings.Contains(line, addr) && strings.Contains(line, "refused") && strings.Contains(line, "attempts=2") {
				return nil
			}
		}
		return fmt.Errorf("no repeated warn line naming %s and the reason in:\n%s", addr, l)
	})
	if strings.Contains(logs.String(), "secret") {
		t.Errorf("the broker password was logged:\n%s", logs.String())
	}
	s, err = broker.Start(broker.Config{Port: port, StoreDir: store})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown()
	eventually(t, func() error {
		if !strings.Contains(logs.String(), "reconnected to broker") {
			return fmt.Errorf("no reconnect line")
		}
		return nil
	})
}

// TestReregisterAfterStorageLoss: the broker restarts without its
// JetStream storage. The host must create the registry bucket again and
// register within seconds, not at its next refresh (a third of a 90 s TTL
// here) and not never (the old registrar kept writing to the lost bucket).
func TestReregisterAfterStorageLoss(t *testing.T) {
	f := newFixture(t, "admin", "rules:\n  - roles: [admin]\n    allow: [\"*\"]\n")
	f.cfg.RegistryTTL = Duration(90 * time.Second)
	port := freePort(t)
	s, err := broker.Start(broker.Config{Port: port, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	nc, err := Connect(NATSConfig{URLs: []string{url}}, "test", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error)
	go func() {
		served <- Serve(ctx, ServeOptions{Conn: nc, Host: f.host, HostKey: f.hostKey, Audit: &memAudit{}, Config: f.cfg})
	}()
	registered := func() error {
		reg, err := bus.OpenRegistry(context.Background(), nc, "t")
		if err != nil {
			return err
		}
		l, err := reg.List(context.Background())
		if err != nil || len(l) != 1 {
			return fmt.Errorf("registry has %d entries (%v)", len(l), err)
		}
		return nil
	}
	eventually(t, registered)
	s.Shutdown()
	s.WaitForShutdown()
	s, err = broker.Start(broker.Config{Port: port, StoreDir: t.TempDir()}) // storage lost
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown()
	eventually(t, registered)
	cancel()
	if err := <-served; err != nil {
		t.Fatal(err)
	}
}
