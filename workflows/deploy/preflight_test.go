package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/signetbus/signet/workflows"
	"github.com/signetbus/signet/workflows/fleettest"
)

// TestPreflightRefusesMissingHost: a host the registry lists but that does
// not answer the preflight ping stops the deploy before any host is
// touched, naming it; on the old code the run started and failed (or
// waited) on web3 in the middle of the fleet.
func TestPreflightRefusesMissingHost(t *testing.T) {
	f := fleettest.New([]string{"web1", "web2", "web3", "web4"}, []string{"a", "b"})
	f.Silent["web3 rpcutil.ping"] = true
	var out bytes.Buffer
	o := opts(t, f, workflows.NewMemStore(), &out)
	_, err := Run(context.Background(), nil, o)
	var me *workflows.MissingHostsError
	if !errors.As(err, &me) || len(me.Missing) != 1 || me.Missing[0].Host != "web3" || me.Expected != 4 {
		t.Fatalf("err = %v, want web3 missing of 4", err)
	}
	if !strings.Contains(err.Error(), "web3: no response within") || !strings.Contains(err.Error(), "nothing was touched") {
		t.Fatalf("err %q does not say why web3 is missing", err)
	}
	if log := f.Log(); len(log) != 0 {
		t.Fatalf("hosts were touched: %v", log)
	}
}

// TestPreflightPlanShowsMissing: --plan names the missing host and why,
// in text and JSON, and plans the others.
func TestPreflightPlanShowsMissing(t *testing.T) {
	f := fleettest.New([]string{"web1", "web2", "web3", "web4"}, []string{"a", "b"})
	f.Silent["web3 rpcutil.ping"] = true
	var out bytes.Buffer
	o := opts(t, f, workflows.NewMemStore(), &out)
	o.Plan = true
	if _, err := Run(context.Background(), nil, o); err != nil {
		t.Fatal(err)
	}
	var pv workflows.PlanView
	if err := json.Unmarshal(out.Bytes(), &pv); err != nil {
		t.Fatal(err)
	}
	if pv.Preflight == nil || len(pv.Preflight.Missing) != 1 || pv.Preflight.Missing[0].Host != "web3" || len(pv.Preflight.Answered) != 3 {
		t.Fatalf("preflight = %+v, want web3 missing, 3 answered", pv.Preflight)
	}
	for _, b := range pv.Batches {
		for _, h := range b {
			if h.Host == "web3" {
				t.Fatalf("the plan holds missing web3: %+v", pv.Batches)
			}
		}
	}
	out.Reset()
	o.Format = "text"
	if _, err := Run(context.Background(), nil, o); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"preflight: 4 hosts expected (registry, hosts role=app env=prod), 3 answered a ping", "  missing: web3: no response within", "unless --allow-missing"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("plan text lacks %q:\n%s", want, out.String())
		}
	}
}

// TestPreflightAllowMissing: --allow-missing deploys the hosts that
// answered, leaves the missing one untouched, and records it in the run
// state and the run_start event.
func TestPreflightAllowMissing(t *testing.T) {
	f := fleettest.New([]string{"web1", "web2", "web3", "web4"}, []string{"a", "b"})
	f.Silent["web3 rpcutil.ping"] = true
	var out bytes.Buffer
	store := workflows.NewMemStore()
	o := opts(t, f, store, &out)
	o.AllowMissing = true
	recap, err := Run(context.Background(), nil, o)
	if err != nil {
		t.Fatal(err)
	}
	if got := hostCalls(f, "web3"); len(got) != 0 {
		t.Fatalf("missing web3 was touched: %v", got)
	}
	for _, h := range []string{"web1", "web2", "web4"} {
		if f.Node(h).Installed != "1.4.2" {
			t.Errorf("%s not deployed", h)
		}
	}
	st, err := store.Load(context.Background(), recap.Run)
	if err != nil {
		t.Fatal(err)
	}
	if st.Preflight == nil || !st.Preflight.AllowMissing || !slices.Equal(st.Preflight.MissingNames(), []string{"web3"}) {
		t.Fatalf("run state preflight = %+v, want web3 missing, allowed", st.Preflight)
	}
	evs := events(t, &out)
	if evs[0].Type != workflows.EventRunStart || !strings.Contains(evs[0].Summary, "without 1 missing hosts (--allow-missing: web3)") {
		t.Fatalf("run_start = %+v, want the missing host named", evs[0])
	}
}

// TestPreflightInventory: with an inventory, a named host that is not in
// the fleet is missing, a discovered host the inventory does not name is
// left alone, and the run refuses until --allow-missing.
func TestPreflightInventory(t *testing.T) {
	f := fleettest.New([]string{"web1", "web2", "web3"}, []string{"a", "b"})
	inv := filepath.Join(t.TempDir(), "prod.txt")
	if err := os.WriteFile(inv, []byte("# prod app hosts\nweb1\nweb2\n\nweb7\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	o := opts(t, f, workflows.NewMemStore(), &out)
	o.Inventory = inv
	_, err := Run(context.Background(), nil, o)
	var me *workflows.MissingHostsError
	if !errors.As(err, &me) || len(me.Missing) != 1 || me.Missing[0].Host != "web7" {
		t.Fatalf("err = %v, want web7 missing", err)
	}
	o.AllowMissing = true
	if _, err := Run(context.Background(), nil, o); err != nil {
		t.Fatal(err)
	}
	if f.Node("web1").Installed != "1.4.2" || f.Node("web2").Installed != "1.4.2" {
		t.Errorf("inventory hosts not deployed")
	}
	if got := hostCalls(f, "web3"); len(got) != 0 {
		t.Errorf("web3, not in the inventory, was touched: %v", got)
	}
	for _, bad := range []string{"web1\nweb1\n", "web1\nbad host\n", "# nothing\n"} {
		if err := os.WriteFile(inv, []byte(bad), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := workflows.ReadInventory(inv); err == nil {
			t.Errorf("inventory %q accepted", bad)
		}
	}
}
