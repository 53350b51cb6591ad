package bus

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestUnknownHostCheckReadsEntriesTogether: a request naming several hosts
// reads their registry entries at once, not one round trip after another
// (a deploy step pays the check for every host of its batch). The broker
// side here is a stand-in for JetStream's direct get that answers only
// once every read has arrived, or after a while: the old code sent one
// read, waited, then the next.
func TestUnknownHostCheckReadsEntriesTogether(t *testing.T) {
	const n = 6
	f := startFleet(t, n)
	bucket := RegistryBucket("test")
	var mu sync.Mutex
	var pending []*nats.Msg
	maxTogether := 0
	answer := func(m *nats.Msg) {
		id := m.Subject[strings.LastIndexByte(m.Subject, '.')+1:]
		r := f.resp[id]
		n := r.cfg.Node()
		raw, err := SignRegistration(r.cfg.HostKey, &Registration{Identity: id, Collective: "test", Facts: n.Facts, Agents: n.Agents, Started: time.Now()})
		if err != nil {
			t.Error(err)
			return
		}
		reply := nats.NewMsg(m.Reply)
		reply.Header.Set(jetstream.StreamHeader, "KV_"+bucket)
		reply.Header.Set("Nats-Subject", "$KV."+bucket+"."+id)
		reply.Header.Set("Nats-Sequence", "1")
		reply.Header.Set("Nats-Time-Stamp", time.Now().Format(time.RFC3339Nano))
		reply.Data = raw
		m.RespondMsg(reply)
	}
	sub, err := f.nc.Subscribe("$JS.API.DIRECT.GET.KV_"+bucket+".>", func(m *nats.Msg) {
		mu.Lock()
		pending = append(pending, m)
		maxTogether = max(maxTogether, len(pending))
		ready := len(pending) == n
		mu.Unlock()
		if !ready {
			time.AfterFunc(300*time.Millisecond, func() { // no more are coming
				mu.Lock()
				defer mu.Unlock()
				for i, p := range pending {
					if p == m {
						pending = append(pending[:i], pending[i+1:]...)
						answer(m)
						return
					}
				}
			})
			return
		}
		mu.Lock()
		all := pending
		pending = nil
		mu.Unlock()
		for _, p := range all {
			answer(p)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	js, _ := jetstream.New(f.nc)
	c := f.client(t, f.operator, LazyRegistry(js, "test", nil))
	var targets []string
	for i := 1; i <= n; i++ {
		targets = append(targets, "web"+string(rune('0'+i)))
	}
	if missing := c.unregistered(context.Background(), targets); missing != nil {
		t.Fatalf("registered hosts reported missing: %v", missing)
	}
	mu.Lock()
	defer mu.Unlock()
	if maxTogether != n {
		t.Fatalf("at most %d of %d registry reads were in flight together: the check reads them one after another", maxTogether, n)
	}
}
