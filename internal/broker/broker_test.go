package broker_test

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/signetbus/signet/internal/broker"
	"github.com/signetbus/signet/internal/broker/brokertest"
)

func TestStartServesJetStream(t *testing.T) {
	s := brokertest.Start(t)
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := nc.JetStream()
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.CreateKeyValue(&nats.KeyValueConfig{Bucket: "t"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put("k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get("k")
	if err != nil || string(e.Value()) != "v" {
		t.Fatalf("get = %v, %v", e, err)
	}
}

// TestClusterRoutesMessages starts two nodes as `signet broker --cluster`
// does and checks that a message published on one reaches a subscriber on
// the other.
func TestClusterRoutesMessages(t *testing.T) {
	portA, portB := freePort(t), freePort(t)
	a, err := broker.Start(broker.Config{Port: -1, StoreDir: t.TempDir(), Name: "n1", Topology: broker.Topology{ClusterListen: fmt.Sprintf("127.0.0.1:%d", portA),
		Routes: []string{fmt.Sprintf("nats://127.0.0.1:%d", portB)}}})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Shutdown()
	b, err := broker.Start(broker.Config{Port: -1, StoreDir: t.TempDir(), Name: "n2", Topology: broker.Topology{ClusterListen: fmt.Sprintf("127.0.0.1:%d", portB),
		Routes: []string{fmt.Sprintf("nats://127.0.0.1:%d", portA)}}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Shutdown()
	deadline := time.Now().Add(10 * time.Second)
	for a.NumRoutes() == 0 || b.NumRoutes() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the nodes did not route to each other")
		}
		time.Sleep(20 * time.Millisecond)
	}
	sub, err := nats.Connect(a.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	s, err := sub.SubscribeSync("signet.node.web1")
	if err != nil {
		t.Fatal(err)
	}
	sub.Flush()
	pub, err := nats.Connect(b.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	for time.Now().Before(deadline) {
		pub.Publish("signet.node.web1", []byte("hello"))
		pub.Flush()
		if m, err := s.NextMsg(200 * time.Millisecond); err == nil {
			if string(m.Data) != "hello" {
				t.Fatalf("got %q", m.Data)
			}
			return
		}
	}
	t.Fatal("a message published on n2 never reached a subscriber on n1")
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
