package bus

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/signetbus/signet/internal/shard"
)

// countHandler answers pings and counts its runs per host.
type countHandler struct {
	mu   *sync.Mutex
	runs map[string]int
	id   string
	gate <-chan struct{} // when set, every action waits for it to close
}

func (h countHandler) Handle(ctx context.Context, c *Call) *Reply {
	h.mu.Lock()
	h.runs[h.id]++
	h.mu.Unlock()
	if h.gate != nil {
		<-h.gate
	}
	return &Reply{Status: StatusOK, Summary: "pong"}
}

// shardFleet starts n responders with names long enough that a request
// naming them all is sent in chunks; each registers, with the shard
// sizes it listens on when listens(i), and claims them in the registry
// when claims(i).
func shardFleet(t *testing.T, n int, listens, claims func(i int) bool, gate ...<-chan struct{}) (*fleet, *Registry, *sync.Mutex, map[string]int) {
	t.Helper()
	f := emptyFleet(t)
	nc := f.nc
	ctx := context.Background()
	reg, err := CreateRegistry(ctx, nc, "test", time.Minute, 0)
	if err != nil {
		t.Fatal(err)
	}
	mu, runs := &sync.Mutex{}, map[string]int{}
	for i := range n {
		id := fmt.Sprintf("host-%03d.rack-one.dc-one.example.com", i)
		hk := newSigner(t)
		f.keys[id] = hk.PublicKey()
		node := &Node{Identity: id, Agents: []string{"rpcutil"}, Facts: map[string]string{"n": fmt.Sprint(i)}}
		f.audits[id] = &memAudit{}
		cfg := ResponderConfig{Conn: nc, Collective: "test", HostKey: hk, Node: func() *Node { return node },
			Trust: f.trust, Handler: countHandler{mu, runs, id, nil}, Audit: f.audits[id]}
		if len(gate) > 0 {
			cfg.Handler = countHandler{mu, runs, id, gate[0]}
		}
		if listens(i) {
			cfg.Shards = shard.Sizes
		}
		r, err := NewResponder(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Start(); err != nil {
			t.Fatal(err)
		}
		f.resp[id] = r
		t.Cleanup(func() { r.Shutdown(context.Background()) })
		e := &Registration{Identity: id, Collective: "test", Agents: node.Agents, Facts: node.Facts}
		if claims(i) {
			e.Shards = shard.Sizes
		}
		if err := reg.Put(ctx, hk, e); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return f, reg, mu, runs
}

// ownClient is a client on a connection of its own (the fleet's
// responders reply on f.nc), so that its messages can be counted.
func ownClient(t *testing.T, f *fleet, reg *Registry) (*Client, *nats.Conn) {
	t.Helper()
	nc, err := nats.Connect(f.url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	r, err := OpenRegistry(context.Background(), nc, "test")
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewClient(ClientConfig{Conn: nc, Collective: "test", Signer: f.operator, User: "alice", HostKeys: f.keys, Registry: r})
	if err != nil {
		t.Fatal(err)
	}
	return c, nc
}

// published counts the messages nc sends during fn.
func published(nc *nats.Conn, fn func()) uint64 {
	before := nc.Stats().OutMsgs
	fn()
	return nc.Stats().OutMsgs - before
}

// A request to more hosts than one broadcast names is published once per
// shard to hosts that listen on shard subjects, not once per host: each
// host runs it once, and a host of the shard that the request does not
// name (filtered out) receives it but never runs it.
func TestChunksArePublishedOncePerShard(t *testing.T) {
	all := func(int) bool { return true }
	f, reg, mu, runs := shardFleet(t, 80, all, all)
	c, nc := ownClient(t, f, reg)
	var out *Outcome
	n := published(nc, func() {
		var err error
		out, err = c.Do(context.Background(), Query{Agent: "rpcutil", Action: "ping", Filter: Filter{Fact: []string{"n!=7"}}, Timeout: 20 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
	})
	if ok, _, _ := out.Counts(); ok != 79 || len(out.Results) != 79 {
		t.Fatalf("%d of 79 ok: %s", ok, statuses(out))
	}
	// 79 hosts in at most 16 shards (the 16-shard size holds them in
	// chunks of at most 64), and the registry listing's few messages.
	if n > 24 {
		t.Errorf("the client published %d messages for 79 hosts: chunks went to each host's own subject", n)
	}
	mu.Lock()
	defer mu.Unlock()
	for id, k := range runs {
		if k != 1 || id == "host-007.rack-one.dc-one.example.com" {
			t.Errorf("%s ran the request %d times", id, k)
		}
	}
}

// Hosts that do not claim shard subjects in their signed registry entry
// (an older signetd) are sent their chunk on their own subject, and a host
// that claims them but does not listen (its broker refused the
// subscription) gets its chunk on its own subject once the client has
// waited a third of its timeout: everyone answers.
func TestOlderHostsAndDeafShardsStillGetTheirChunk(t *testing.T) {
	listens := func(i int) bool { return i%4 != 0 && i != 5 }
	claims := func(i int) bool { return i%4 != 0 }
	f, reg, mu, runs := shardFleet(t, 80, listens, claims)
	c := f.client(t, f.operator, reg)
	out, err := c.Do(context.Background(), Query{Agent: "rpcutil", Action: "ping", Timeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if ok, _, _ := out.Counts(); ok != 80 {
		t.Fatalf("%d of 80 ok: %s", ok, statuses(out))
	}
	mu.Lock()
	defer mu.Unlock()
	for id, k := range runs {
		if k != 1 {
			t.Errorf("%s ran the request %d times", id, k)
		}
	}
}

// A fleet that is slow to answer (every action takes longer than a third
// of the timeout) is not sent its chunks again on each host's own
// subject: that would undo what the shard saved, and cost every host a
// duplicate record.
func TestSlowShardIsNotSentAgainPerHost(t *testing.T) {
	all := func(int) bool { return true }
	gate := make(chan struct{})
	f, reg, mu, runs := shardFleet(t, 80, all, all, gate)
	c, nc := ownClient(t, f, reg)
	// The first look at silent hosts is at 2s (a third of 6s), the next
	// at 3s; the actions finish at 2.5s.
	time.AfterFunc(2500*time.Millisecond, func() { close(gate) })
	var out *Outcome
	n := published(nc, func() {
		var err error
		out, err = c.Do(context.Background(), Query{Agent: "rpcutil", Action: "ping", Timeout: 6 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
	})
	if ok, _, _ := out.Counts(); ok != 80 {
		t.Fatalf("%d of 80 ok: %s", ok, statuses(out))
	}
	if n > 24 {
		t.Errorf("the client published %d messages for 80 slow hosts: their chunks went out again per host", n)
	}
	mu.Lock()
	defer mu.Unlock()
	for id, k := range runs {
		if k != 1 {
			t.Errorf("%s ran the request %d times", id, k)
		}
	}
	for id, a := range f.audits {
		if r := a.find(CodeInProgress); r != nil {
			t.Errorf("%s was sent a copy while it ran the request (%s %s)", id, r.Decision, r.Subject)
		}
	}
}
