package signetd

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"golang.org/x/crypto/ssh"

	"github.com/signetbus/signet/bus"
	"github.com/signetbus/signet/internal/broker/brokertest"
	"github.com/signetbus/signet/internal/keys/keytest"
	"github.com/signetbus/signet/internal/testio"
)

type onlyKey struct{ k ssh.PublicKey }

func (o onlyKey) Lookup(string) (ssh.PublicKey, bool) { return o.k, o.k != nil }

// TestLogLinesNameTheHostOnce runs the real daemon on a real broker and
// makes its responder log a refusal (a request from a key it does not
// trust): every JSON log line, the daemon's and the responder's, names
// the host once. Log shippers reject or mangle objects with a key twice,
// and until this test the responder's lines carried "identity" twice.
func TestLogLinesNameTheHostOnce(t *testing.T) {
	srv := brokertest.Start(t)
	d := newDaemonFiles(t)
	d.write(t, `nats: {urls: ["`+srv.ClientURL()+`"]}`)
	ctx, cancel := context.WithCancel(context.Background())
	stderr := &testio.Buffer{}
	done := make(chan int, 1)
	go func() {
		var out bytes.Buffer
		done <- Main(ctx, []string{"-c", d.config}, IO{Out: &out, Err: stderr, Getenv: func(string) string { return "" }})
	}()
	defer func() { cancel(); <-done }()

	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	// A stranger's request is refused with a signed reply and logged.
	c, err := bus.NewClient(bus.ClientConfig{Conn: nc, Collective: "signet", Signer: keytest.Signer(t), User: "mallory",
		HostKeys: onlyKey{keytest.Signer(t).PublicKey()}})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(stderr.String(), " refused\"") {
		if time.Now().After(deadline) {
			t.Fatalf("the responder never logged the refusal (\"message refused\" or \"request refused\"); stderr:\n%s", stderr.String())
		}
		c.Do(context.Background(), bus.Query{Agent: "rpcutil", Action: "ping", Targets: []string{"web1"}, Timeout: 300 * time.Millisecond})
	}
	sc := bufio.NewScanner(strings.NewReader(stderr.String()))
	lines := 0
	for sc.Scan() {
		line := sc.Text()
		if !json.Valid([]byte(line)) {
			continue
		}
		lines++
		if n := strings.Count(line, `"identity":`); n != 1 {
			t.Errorf("log line names the host %d times, want once: %s", n, line)
		}
	}
	if lines == 0 {
		t.Fatalf("no JSON log lines; stderr:\n%s", stderr.String())
	}
}
