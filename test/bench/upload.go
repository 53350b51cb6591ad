package main

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"golang.org/x/crypto/ssh"

	"github.com/signetbus/signet/agents"
	"github.com/signetbus/signet/bus"
	"github.com/signetbus/signet/internal/shard"
)

// uploadBytes measures what one signed ping to all of n in-process
// responders (20-character names, 100 per broker connection, all
// registered) costs in bytes, twice: with registry entries that do not
// list shard subjects (an older fleet: every 64-host chunk goes to each of
// its hosts' own subjects) and with entries that do (each chunk once per
// shard). It prints the client's publishes and upload (its connection's
// counters, the registry listing included), and what the broker sent to
// everyone else (the hosts: its total out-bytes less the client's
// in-bytes).
func uploadBytes(s *server.Server, op ssh.Signer, authFile, policyFile string, n int) error {
	ctx := context.Background()
	const perConn = 100
	cs := conns(s, n, perConn)
	defer closeAll(cs)
	reg, err := bus.CreateRegistry(ctx, cs[0], "up", time.Hour, 0)
	if err != nil {
		return err
	}
	known := hostKeys{}
	type host struct {
		id string
		hk ssh.Signer
	}
	var hosts []host
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("host%05d.dc1.example", i)
		hk := newSigner()
		known[id] = hk.PublicKey()
		h, err := agents.NewHost(agents.HostOptions{Identity: id, Collective: "up", AuthorizedKeys: authFile, Policy: policyFile})
		if err != nil {
			return err
		}
		r, err := bus.NewResponder(bus.ResponderConfig{Conn: cs[i/perConn], Collective: "up", HostKey: hk, Node: h.Node,
			Trust: h, Handler: h, Audit: discard{}, Shards: shard.Sizes})
		if err != nil {
			return err
		}
		if err := r.Start(); err != nil {
			return err
		}
		defer r.Shutdown(ctx)
		hosts = append(hosts, host{id, hk})
	}
	register := func(shards []int) error {
		for _, h := range hosts {
			if err := reg.Put(ctx, h.hk, &bus.Registration{Identity: h.id, Collective: "up", Agents: []string{"rpcutil"}, Shards: shards}); err != nil {
				return err
			}
		}
		return nil
	}
	nc := connect(s.ClientURL())
	defer nc.Close()
	creg, err := bus.OpenRegistry(ctx, nc, "up")
	if err != nil {
		return err
	}
	c, err := bus.NewClient(bus.ClientConfig{Conn: nc, Collective: "up", Signer: op, User: "bench", HostKeys: known, Registry: creg})
	if err != nil {
		return err
	}
	for _, mode := range []struct {
		name   string
		shards []int
	}{{"per host (entries without shards)", nil}, {"once per shard", shard.Sizes}} {
		if err := register(mode.shards); err != nil {
			return err
		}
		v0, _ := s.Varz(nil)
		st0 := nc.Stats()
		start := time.Now()
		out, err := c.Do(ctx, bus.Query{Agent: "rpcutil", Action: "ping", Timeout: 2 * time.Minute})
		if err != nil {
			return err
		}
		wall := time.Since(start)
		st1 := nc.Stats()
		v1, _ := s.Varz(nil)
		ok, _, _ := out.Counts()
		toHosts := (v1.OutBytes - v0.OutBytes) - int64(st1.InBytes-st0.InBytes)
		fmt.Printf("%6d hosts, %-34s %d ok in %6.0f ms: client %6d publishes, %8.2f MB up, %8.2f MB down; the broker sent the hosts %8.2f MB\n",
			n, mode.name+":", ok, float64(wall.Milliseconds()), st1.OutMsgs-st0.OutMsgs, float64(st1.OutBytes-st0.OutBytes)/1e6,
			float64(st1.InBytes-st0.InBytes)/1e6, float64(toHosts)/1e6)
	}
	return nil
}
