package main

import (
	"context"
	"fmt"
	"hash/fnv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"golang.org/x/crypto/ssh"

	"github.com/signetbus/signet/bus"
)

// uploadBytes measures what the client uploads to the broker for one
// request naming n hosts (all of a fleet of n), today and with the
// shard-subject design of docs/performance.md ("Uploading chunked
// requests once"), and what the broker then sends to the hosts.
//
// Today: the real bus.Client sends the request; every host's subject has a
// silent subscriber (so the broker has somewhere to deliver and no "no
// responders" status causes resends), and the client's connection
// counts the bytes it wrote. The design: the same 64-host chunks, grouped
// by the shard of each identity (FNV-1a mod shards), each signed once and
// published once on its shard's subject, counted the same way; every host
// of a shard receives each chunk of its shard.
func uploadBytes(s *server.Server, op ssh.Signer, n int, shardCounts []int) error {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("host%05d.dc1.example", i) // 20-character FQDNs
	}
	sink := connect(s.ClientURL())
	defer sink.Close()
	var received, receivedBytes atomic.Int64
	sub, err := sink.Subscribe("up.node.>", func(m *nats.Msg) { received.Add(1); receivedBytes.Add(int64(len(m.Data))) })
	if err != nil {
		return err
	}
	sub.SetPendingLimits(-1, -1)
	if err := sink.Flush(); err != nil {
		return err
	}
	nc := connect(s.ClientURL())
	defer nc.Close()
	known := hostKeys{}
	for _, id := range ids {
		known[id] = op.PublicKey() // never used: nobody answers
	}
	c, err := bus.NewClient(bus.ClientConfig{Conn: nc, Collective: "up", Signer: op, User: "bench", HostKeys: known})
	if err != nil {
		return err
	}
	before := nc.Stats()
	if _, err := c.Do(context.Background(), bus.Query{Agent: "rpcutil", Action: "ping", Expected: ids, Timeout: 300 * time.Millisecond}); err != nil {
		return err
	}
	after := nc.Stats()
	for last := int64(-1); last != received.Load(); {
		last = received.Load()
		time.Sleep(100 * time.Millisecond)
	}
	today := after.OutBytes - before.OutBytes
	fmt.Printf("%6d targets, today:       %6d publishes, %8.2f MB uploaded by the client, %.2f MB to the hosts (%d messages)\n",
		n, after.OutMsgs-before.OutMsgs, float64(today)/1e6, float64(receivedBytes.Load())/1e6, received.Load())

	for _, shards := range shardCounts {
		groups := map[uint32][]string{}
		for _, id := range ids {
			h := fnv.New32a()
			h.Write([]byte(id))
			groups[h.Sum32()%uint32(shards)] = append(groups[h.Sum32()%uint32(shards)], id)
		}
		pub := connect(s.ClientURL())
		before := pub.Stats()
		var down int64
		inbox := pub.NewInbox()
		for shard, members := range groups {
			for i := 0; i < len(members); i += 64 {
				chunk := members[i:min(i+64, len(members))]
				frame, err := bus.SignRequest(op, &bus.Request{Version: bus.ProtocolVersion, ID: bus.NewID(),
					Sender: bus.Sender{User: "bench", Key: ssh.FingerprintSHA256(op.PublicKey())}, Collective: "up",
					Agent: "rpcutil", Action: "ping", Targets: chunk, Created: time.Now().UnixMilli(), TTL: 60})
				if err != nil {
					return err
				}
				if err := pub.PublishRequest(fmt.Sprintf("up.shard.%d", shard), inbox, frame); err != nil {
					return err
				}
				down += int64(len(frame)) * int64(len(members)) // every host of the shard receives it
			}
		}
		pub.Flush()
		after := pub.Stats()
		pub.Close()
		up := after.OutBytes - before.OutBytes
		fmt.Printf("%6d targets, %5d shards: %6d publishes, %8.2f MB uploaded (%.1fx less), %.2f MB to the hosts (%.1f hosts per shard)\n",
			n, shards, after.OutMsgs-before.OutMsgs, float64(up)/1e6, float64(today)/float64(up), float64(down)/1e6, float64(n)/float64(len(groups)))
	}
	return nil
}
