package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/signetbus/signet/bus"
	"github.com/signetbus/signet/internal/keys"
	"github.com/signetbus/signet/internal/lab"
	"github.com/signetbus/signet/plugins"
	_ "github.com/signetbus/signet/plugins/all"
	"github.com/signetbus/signet/workflows"
	"github.com/signetbus/signet/workflows/buscaller"
	"github.com/signetbus/signet/workflows/deploy"
	"github.com/signetbus/signet/workflows/fleettest"
)

// instant is a plugin whose actions return at once: it declares the real
// plugin's DDL (so validation is the real one) and answers from an
// in-memory fleet. It isolates signet's orchestration overhead from the
// time real backends take.
type instant struct {
	ddl   plugins.DDL
	fleet *atomic.Pointer[fleettest.Fleet]
	agent string
}

func (p *instant) Describe() plugins.DDL { return p.ddl }

func (p *instant) Run(ctx context.Context, r *plugins.Request) (*plugins.Result, error) {
	host := r.Identity
	if p.agent == "haproxy" {
		host = "lb1" // the in-memory fleet keeps the load balancer view there
	}
	params := map[string]any(r.Params)
	res, err := p.fleet.Load().Call(ctx, workflows.Call{Agent: p.agent, Action: r.Action, Params: params, Hosts: []string{host}})
	if err != nil {
		return nil, err
	}
	if len(res) != 1 || !res[0].OK {
		return nil, fmt.Errorf("%s", res[0].Error)
	}
	// Round-trip the data through JSON as a reply would.
	b, _ := json.Marshal(res[0].Data)
	var data map[string]any
	json.Unmarshal(b, &data)
	return &plugins.Result{Changed: res[0].Changed, Summary: res[0].Summary, Data: data}, nil
}

const benchApp = `version: 1
name: app
package: app
service: app
hosts: [role=app]
haproxy:
  backend: app
  lb_filter: [lb=prod]
health:
  url: http://127.0.0.1:8080/version
batch_size: 2
maintenance: 30m
`

// deployOverhead runs the same rolling deploy over an in-memory fleet
// twice: once called directly, once through the signed bus and real
// responders whose plugins answer at once. The difference, divided by the
// number of signed calls, is signet's overhead per host step.
func deployOverhead(hosts, rounds int) error {
	dir, err := os.MkdirTemp("", "signet-bench-deploy")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	ids := make([]string, hosts)
	for i := range ids {
		ids[i] = fmt.Sprintf("web%d", i+1)
	}
	appFile := filepath.Join(dir, "app.yaml")
	os.WriteFile(appFile, []byte(benchApp), 0o600)
	newFleet := func() *fleettest.Fleet {
		f := fleettest.New(ids, []string{"a", "b", "c"})
		for _, id := range ids {
			f.Nodes[id].Facts["env"] = "lab"
		}
		delete(f.Nodes, "lb2") // one load balancer, as in the lab run
		return f
	}
	fleet := &atomic.Pointer[fleettest.Fleet]{}
	ddls := map[string]plugins.DDL{}
	for name, cfg := range map[string]string{"package": `{"backend":"apt"}`, "service": `{"backend":"runit","service_dir":"/tmp"}`,
		"haproxy": "", "maintenance": `{"backends":[{"alertmanager":{"url":"http://127.0.0.1:9093"}}]}`, "health": ""} {
		info, ok := plugins.Lookup(name)
		if !ok {
			return fmt.Errorf("plugin %s is not registered", name)
		}
		var raw json.RawMessage
		if cfg != "" {
			raw = json.RawMessage(cfg)
		}
		p, err := info.New(raw)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		ddls[name] = p.Describe()
	}
	l, err := lab.Start(context.Background(), lab.Options{Dir: filepath.Join(dir, "lab"), Hosts: hosts,
		Facts: func(h *lab.HostInfo) map[string]string {
			f := map[string]string{"role": "app"}
			if h.Index == 1 {
				f["lb"] = "prod" // web1 plays the load balancer
			}
			return f
		},
		Plugins: func(h *lab.HostInfo) (map[string]plugins.Plugin, error) {
			out := map[string]plugins.Plugin{}
			for name, d := range ddls {
				out[name] = &instant{ddl: d, fleet: fleet, agent: name}
			}
			return out, nil
		}})
	if err != nil {
		return err
	}
	defer l.Stop()
	nc, err := nats.Connect(l.Broker.ClientURL())
	if err != nil {
		return err
	}
	defer nc.Close()
	op, err := keys.LoadSigner(filepath.Join(l.Dir, "operator_key"), nil)
	if err != nil {
		return err
	}
	known, err := keys.LoadKnownHosts(filepath.Join(l.Dir, "known_hosts"))
	if err != nil {
		return err
	}
	reg, err := bus.OpenRegistry(context.Background(), nc, l.Collective)
	if err != nil {
		return err
	}
	client, err := bus.NewClient(bus.ClientConfig{Conn: nc, Collective: l.Collective, Signer: op, User: "bench", HostKeys: known, Registry: reg})
	if err != nil {
		return err
	}
	var direct, signed []time.Duration
	calls := 0
	for r := -1; r < rounds; r++ {
		f := newFleet()
		t0 := time.Now()
		if _, err := deploy.Run(context.Background(), nil, deploy.Options{AppFile: appFile, Version: "1.4.2", Env: "lab", Yes: true,
			Output: io.Discard, Caller: f, Store: workflows.NewMemStore(), User: "bench"}); err != nil {
			return fmt.Errorf("direct deploy: %w", err)
		}
		d := time.Since(t0)
		calls = len(f.Log())
		f = newFleet()
		fleet.Store(f)
		t0 = time.Now()
		if _, err := deploy.Run(context.Background(), nil, deploy.Options{AppFile: appFile, Version: "1.4.2", Env: "lab", Yes: true,
			Output: io.Discard, Caller: &buscaller.Caller{Client: client, Registry: reg}, Store: workflows.NewMemStore(), User: "bench"}); err != nil {
			return fmt.Errorf("signed deploy: %w", err)
		}
		s := time.Since(t0)
		if r >= 0 {
			direct, signed = append(direct, d), append(signed, s)
		}
	}
	ds, ss := summarize(direct), summarize(signed)
	perCall := (ss.median - ds.median) / time.Duration(calls)
	fmt.Printf("rolling deploy of %d hosts (batch 2, 9 steps per host, %d signed calls incl. observation), instant plugins:\n", hosts, calls)
	fmt.Printf("  in-memory caller:   %s\n  signed bus + lab:   %s\n  signet overhead per host step: %.2f ms\n",
		ds, ss, float64(perCall.Microseconds())/1000)
	return nil
}
