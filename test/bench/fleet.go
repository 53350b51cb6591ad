package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"golang.org/x/crypto/ssh"

	"github.com/signetbus/signet/bus"
)

// fleetPing starts n real signetd processes against the broker, waits until
// they have all registered, and times the equivalent of `signet ping`: a
// bus.Client with the registry (list the registry, sign one request,
// collect every verified reply). It returns the median and p90 of rounds
// pings.
func fleetPing(s *server.Server, dir string, op ssh.Signer, n, rounds, controlRounds int) (stats, error) {
	bin := filepath.Join(dir, "signetd")
	if err := buildSignetd(bin); err != nil {
		return stats{}, err
	}
	fdir := filepath.Join(dir, fmt.Sprintf("fleet%d", n))
	if err := os.MkdirAll(fdir, 0o700); err != nil {
		return stats{}, err
	}
	defer os.RemoveAll(fdir)
	authFile, policyFile := writeTrust(fdir, op)
	var procs []*exec.Cmd
	defer func() {
		for _, p := range procs {
			p.Process.Kill()
			p.Wait()
		}
	}()
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("fleet%03d", i)
		cfg := filepath.Join(fdir, id+".yaml")
		if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`identity: %s
collective: fleet
nats: {urls: [%q]}
host_key: %s
authorized_keys: %s
policy: %s
audit_log: %s
control_state: %s
`, id, s.ClientURL(), filepath.Join(fdir, id+".key"), authFile, policyFile, filepath.Join(fdir, id+".audit"), filepath.Join(fdir, id+".control.json"))), 0o600); err != nil {
			return stats{}, err
		}
		cmd := exec.Command(bin, "-c", cfg, "--log-format", "json")
		cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
		if err := cmd.Start(); err != nil {
			return stats{}, err
		}
		procs = append(procs, cmd)
	}
	nc := connect(s.ClientURL())
	defer nc.Close()
	ctx := context.Background()
	known, reg, err := waitRegistered(nc, "fleet", n)
	if err != nil {
		return stats{}, err
	}
	c, err := bus.NewClient(bus.ClientConfig{Conn: nc, Collective: "fleet", Signer: op, User: "bench", HostKeys: known, Registry: reg})
	if err != nil {
		return stats{}, err
	}
	var times []time.Duration
	for r := -2; r < rounds; r++ {
		start := time.Now()
		out, err := c.Do(ctx, bus.Query{Agent: "rpcutil", Action: "ping", Timeout: 20 * time.Second})
		if err != nil {
			return stats{}, err
		}
		if ok, _, _ := out.Counts(); ok != n {
			return stats{}, fmt.Errorf("fleet ping: %d of %d ok", ok, n)
		}
		if r >= 0 {
			times = append(times, time.Since(start))
		}
	}
	if controlRounds > 0 {
		auditOf := func(i int) string { return filepath.Join(fdir, fmt.Sprintf("fleet%03d.audit", i)) }
		if err := controlReach(nc, c, op, "fleet", auditOf, n, controlRounds); err != nil {
			return stats{}, err
		}
	}
	return summarize(times), nil
}

// waitRegistered waits until n hosts of the collective are in its
// registry and returns their host keys (the bench trusts the registry's
// host keys; real clients use known_hosts) and the registry.
func waitRegistered(nc *nats.Conn, collective string, n int) (hostKeys, *bus.Registry, error) {
	ctx := context.Background()
	known := hostKeys{}
	var reg *bus.Registry
	deadline := time.Now().Add(2 * time.Minute)
	for len(known) < n {
		if time.Now().After(deadline) {
			return nil, nil, fmt.Errorf("only %d of %d signetd registered after 2m", len(known), n)
		}
		time.Sleep(200 * time.Millisecond)
		if reg == nil {
			r, err := bus.OpenRegistry(ctx, nc, collective)
			if err != nil {
				continue
			}
			reg = r
		}
		regs, err := reg.List(ctx)
		if err != nil {
			continue
		}
		for _, r := range regs {
			if pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(r.HostKey)); err == nil {
				known[r.Identity] = pub
			}
		}
	}
	return known, reg, nil
}
