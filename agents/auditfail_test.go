package agents

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/signetbus/signet/bus"
	"github.com/signetbus/signet/internal/audit"
	"github.com/signetbus/signet/internal/broker/brokertest"
	"github.com/signetbus/signet/plugins"
)

// marker counts its runs: a test can tell whether an action ran at all.
type marker struct{ runs *atomic.Int64 }

func (marker) Describe() plugins.DDL {
	return plugins.DDL{Name: "marker", Actions: []plugins.Action{{Name: "mark"}}}
}

func (m marker) Run(context.Context, *plugins.Request) (*plugins.Result, error) {
	m.runs.Add(1)
	return &plugins.Result{Changed: true, Summary: "marked"}, nil
}

// smallDisk mounts a tmpfs of a few KiB for the test, or skips with the
// reason when it cannot (not root, no mount).
func smallDisk(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipped: mounting a small tmpfs needs root")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("skipped: cannot mount a tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	return dir
}

// fill writes to a file in dir until the filesystem is full.
func fill(t *testing.T, dir string) {
	t.Helper()
	f, err := os.Create(filepath.Join(dir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("fill: %v", err)
			}
			return
		}
	}
}

// TestFullDiskRefusesTheAction: the audit log's disk is full, so the
// record that an action starts cannot be written: the action is refused
// with a clear reason and never runs.
func TestFullDiskRefusesTheAction(t *testing.T) {
	dir := smallDisk(t)
	f := newFixture(t, "admin", "rules:\n  - roles: [admin]\n    allow: [\"*\"]\n")
	var runs atomic.Int64
	h, err := NewHost(HostOptions{Identity: "web1", Collective: "t", Plugins: map[string]plugins.Plugin{"marker": marker{&runs}},
		AuthorizedKeys: f.cfg.AuthorizedKeys, Policy: f.cfg.Policy})
	if err != nil {
		t.Fatal(err)
	}
	aud, err := audit.Open(filepath.Join(dir, "audit.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer aud.Close()
	s := brokertest.Start(t)
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	r, err := bus.NewResponder(bus.ResponderConfig{Conn: nc, Collective: "t", HostKey: f.hostKey, Node: h.Node, Trust: h, Handler: h, Audit: aud})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	defer r.Shutdown(context.Background())
	nc.Flush()
	c, err := bus.NewClient(bus.ClientConfig{Conn: nc, Collective: "t", Signer: f.op, User: "alice", HostKeys: keyMap{"web1": f.hostKey.PublicKey()}})
	if err != nil {
		t.Fatal(err)
	}
	do := func() bus.Result {
		out, err := c.Do(context.Background(), bus.Query{Agent: "marker", Action: "mark", Targets: []string{"web1"}, Timeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		return out.Results[0]
	}
	if res := do(); res.Status != bus.ResultOK {
		t.Fatalf("with room on the disk: %s %s", res.Status, res.Error)
	}
	// The log is rotated onto a full disk: the new file has no room for
	// even one record.
	fill(t, dir)
	if err := os.Rename(filepath.Join(dir, "audit.jsonl"), filepath.Join(dir, "audit.jsonl.1")); err != nil {
		t.Fatal(err)
	}
	if err := aud.Reopen(); err != nil {
		t.Fatal(err)
	}
	res := do()
	if res.Status != bus.ResultRefused || res.Reply == nil || res.Reply.Code != "audit_unavailable" || !strings.Contains(res.Error, "audit") {
		t.Fatalf("with a full disk: %s code=%v %q, want refused audit_unavailable", res.Status, res.Reply, res.Error)
	}
	if got := runs.Load(); got != 1 {
		t.Fatalf("the action ran %d times, want once (before the disk was full)", got)
	}
}
