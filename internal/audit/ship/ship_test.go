package ship

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/crypto/ssh"

	"github.com/signetbus/signet/bus"
	"github.com/signetbus/signet/internal/audit"
	"github.com/signetbus/signet/internal/audit/audittest"
	"github.com/signetbus/signet/internal/broker"
	"github.com/signetbus/signet/internal/broker/brokertest"
)

func hostKey(t testing.TB) ssh.Signer {
	t.Helper()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func connect(t testing.TB, url string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond), nats.RetryOnFailedConnect(true))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// host is one signetd's audit log and its shipper.
type host struct {
	t      testing.TB
	id     string
	key    ssh.Signer
	op     ssh.Signer // the operator who signs the requests
	path   string
	log    *audit.Log
	sh     *Shipper
	cancel context.CancelFunc
	done   chan error
	n      int
}

func newHost(t testing.TB, id, dir string) *host {
	h := &host{t: t, id: id, key: hostKey(t), op: hostKey(t), path: filepath.Join(dir, "audit.jsonl")}
	l, err := audit.Open(h.path)
	if err != nil {
		t.Fatal(err)
	}
	l.Identity, l.Signer, l.CheckpointEvery = id, h.key, 4
	h.log = l
	t.Cleanup(func() { h.stop(); l.Close() })
	return h
}

func (h *host) start(nc *nats.Conn, collective string) {
	sh, err := New(Config{Conn: nc, Collective: collective, Identity: h.id, Path: h.path, Wake: h.log.Written(),
		Poll: 20 * time.Millisecond, Retry: 20 * time.Millisecond, Timeout: 500 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(testWriter{h.t}, nil))})
	if err != nil {
		h.t.Fatal(err)
	}
	h.runShipper(sh)
}

func (h *host) runShipper(sh *Shipper) {
	ctx, cancel := context.WithCancel(context.Background())
	h.sh, h.cancel, h.done = sh, cancel, make(chan error, 1)
	go func() { h.done <- sh.Run(ctx) }()
}

func (h *host) stop() {
	if h.cancel != nil {
		h.cancel()
		<-h.done
		h.cancel = nil
	}
}

func (h *host) write(n int) {
	for range n {
		h.n++
		if err := h.log.Audit(audittest.Record(h.t, h.op, "alice", h.id, fmt.Sprintf("req%d", h.n), "package", "update", map[string]any{"package": "nginx"})); err != nil {
			h.t.Fatal(err)
		}
	}
}

// waitShipped waits until the shipper acknowledged the log's head.
func (h *host) waitShipped() {
	h.t.Helper()
	want, _ := h.log.Head()
	deadline := time.Now().Add(20 * time.Second)
	for h.sh.Acked() != want {
		if time.Now().After(deadline) {
			h.t.Fatalf("shipped up to seq %d, the log is at %d", h.sh.Acked(), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (h *host) keys(id string) (ssh.PublicKey, bool) {
	if id == h.id {
		return h.key.PublicKey(), true
	}
	return nil, false
}

func readStream(t testing.TB, nc *nats.Conn, collective string) []audit.Line {
	t.Helper()
	js, _ := jetstream.New(nc)
	lines, err := Read(context.Background(), js, collective, Query{})
	if err != nil {
		t.Fatal(err)
	}
	return lines
}

func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func startBroker(t testing.TB, port int, dir string) *server.Server {
	s, err := broker.Start(broker.Config{Port: port, StoreDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return s
}

// The broker goes away while the host keeps auditing; when it is back,
// shipping catches up with no gap, and a restarted shipper resumes from
// its state file without shipping a line twice.
func TestShippingCatchesUpAfterBrokerOutage(t *testing.T) {
	port, store := freePort(t), t.TempDir()
	s := startBroker(t, port, store)
	nc := connect(t, s.ClientURL())
	h := newHost(t, "web1", t.TempDir())
	h.start(nc, "signet")
	h.write(5)
	h.waitShipped()

	s.Shutdown()
	s.WaitForShutdown()
	h.write(7) // the audit never waits for the broker
	if h.sh.Acked() >= 12 {
		t.Fatalf("acknowledged seq %d with the broker down", h.sh.Acked())
	}
	startBroker(t, port, store)
	h.waitShipped()

	h.stop()
	h.write(3)
	h.start(nc, "signet")
	h.waitShipped()

	lines := readStream(t, nc, "signet")
	rep := audit.Verify(lines, audit.VerifyOptions{HostKey: h.keys, FromStart: true})
	if len(rep.Findings) > 0 {
		t.Fatalf("findings: %v", rep.Findings)
	}
	head, _ := h.log.Head()
	if len(lines) != int(head) || rep.Hosts[0].Last != head {
		t.Fatalf("stream holds %d lines up to seq %d, the log has %d", len(lines), rep.Hosts[0].Last, head)
	}
	local, _ := os.ReadFile(h.path)
	if !bytes.Equal(bytes.Join(rawOf(lines), []byte("\n")), bytes.TrimSuffix(local, []byte("\n"))) {
		t.Fatal("the stream's lines are not the log's bytes")
	}
}

func rawOf(lines []audit.Line) [][]byte {
	var out [][]byte
	for _, l := range lines {
		out = append(out, l.Raw)
	}
	return out
}

// A rotated log is shipped to its end, then the new file.
func TestShippingFollowsRotation(t *testing.T) {
	s := brokertest.Start(t)
	nc := connect(t, s.ClientURL())
	h := newHost(t, "web1", t.TempDir())
	h.start(nc, "signet")
	h.write(3)
	h.stop()
	h.write(2) // not shipped yet when the log rotates
	if err := os.Rename(h.path, h.path+".1"); err != nil {
		t.Fatal(err)
	}
	if err := h.log.Reopen(); err != nil {
		t.Fatal(err)
	}
	h.write(2)
	h.start(nc, "signet")
	h.waitShipped()
	rep := audit.Verify(readStream(t, nc, "signet"), audit.VerifyOptions{HostKey: h.keys, FromStart: true})
	if len(rep.Findings) > 0 || rep.Hosts[0].Last != 9 {
		t.Fatalf("findings %v, summary %+v", rep.Findings, rep.Hosts)
	}
}

// A broker user can delete or rewrite stream messages but has no host key:
// every such change is reported by host and seq.
func TestVerifyFindsTamperingInTheStream(t *testing.T) {
	s := brokertest.Start(t)
	nc := connect(t, s.ClientURL())
	js, _ := jetstream.New(nc)
	ctx := context.Background()
	type tamper func(t *testing.T, st jetstream.Stream, h *host, subj string)
	get := func(t *testing.T, st jetstream.Stream, seq uint64) []byte {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		return m.Data
	}
	del := func(t *testing.T, st jetstream.Stream, seq uint64) {
		if err := st.DeleteMsg(ctx, seq); err != nil {
			t.Fatal(err)
		}
	}
	pub := func(t *testing.T, subj string, data []byte) {
		if _, err := js.Publish(ctx, subj, data); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		name   string
		tamper tamper
		opts   audit.VerifyOptions
		want   string
	}{
		{"edited", func(t *testing.T, st jetstream.Stream, h *host, subj string) {
			b := bytes.Replace(get(t, st, 3), []byte("nginx"), []byte("ngimx"), 1)
			del(t, st, 3)
			pub(t, subj, b)
		}, audit.VerifyOptions{}, "edited 3"}, // and reordered: the copy is stored last
		{"deleted", func(t *testing.T, st jetstream.Stream, h *host, subj string) {
			del(t, st, 3)
		}, audit.VerifyOptions{}, "deleted 3"},
		{"reordered", func(t *testing.T, st jetstream.Stream, h *host, subj string) {
			b := get(t, st, 2)
			del(t, st, 2)
			pub(t, subj, b)
		}, audit.VerifyOptions{}, "reordered 2"},
		{"truncated, then the host writes on", func(t *testing.T, st jetstream.Stream, h *host, subj string) {
			for seq := uint64(7); seq <= 10; seq++ {
				del(t, st, seq)
			}
			h.write(1)
			h.waitShipped()
		}, audit.VerifyOptions{}, "deleted 7"},
		{"truncated, the host silent", func(t *testing.T, st jetstream.Stream, h *host, subj string) {
			for seq := uint64(7); seq <= 10; seq++ {
				del(t, st, seq)
			}
		}, audit.VerifyOptions{MaxAge: time.Hour, Now: time.Now().Add(2 * time.Hour)}, "truncated 6"},
		{"purged and republished with a forged checkpoint", func(t *testing.T, st jetstream.Stream, h *host, subj string) {
			if err := st.Purge(ctx); err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			l := audit.New(&buf)
			l.Identity, l.Signer, l.CheckpointEvery = h.id, hostKey(t), 4
			for range 5 {
				l.Audit(&bus.AuditRecord{Identity: h.id, Decision: bus.DecisionAccepted})
			}
			for _, ln := range audit.FileLines(buf.Bytes(), "forged") {
				pub(t, subj, ln.Raw)
			}
		}, audit.VerifyOptions{}, "forged 5"},
		{"rewritten with the host key, one request edited", func(t *testing.T, st jetstream.Stream, h *host, subj string) {
			// Whoever holds web1's key rewrites the whole chain and signs
			// its checkpoints; the chain is intact, the request is not.
			if err := st.Purge(ctx); err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			l := audit.New(&buf)
			l.Identity, l.Signer, l.CheckpointEvery = h.id, h.key, 4
			for n := range 4 {
				rec := audittest.Record(t, h.op, "alice", h.id, fmt.Sprintf("req%d", n), "package", "update", map[string]any{"package": "nginx"})
				if n == 2 {
					rec.Params = map[string]any{"package": "backdoor"}
				}
				l.Audit(rec)
			}
			for _, ln := range audit.FileLines(buf.Bytes(), "rewritten") {
				pub(t, subj, ln.Raw)
			}
		}, audit.VerifyOptions{}, "signature 3"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			collective := fmt.Sprintf("c%d", i)
			h := newHost(t, "web1", t.TempDir())
			h.start(nc, collective)
			h.write(8) // 1-4, checkpoint 5, 6-9, checkpoint 10
			h.waitShipped()
			st, err := js.Stream(ctx, Stream(collective))
			if err != nil {
				t.Fatal(err)
			}
			clean := audit.Verify(readStream(t, nc, collective), audit.VerifyOptions{HostKey: h.keys, FromStart: true})
			if len(clean.Findings) > 0 {
				t.Fatalf("findings before tampering: %v", clean.Findings)
			}
			c.tamper(t, st, h, Subject(collective, h.id))
			c.opts.HostKey, c.opts.FromStart = h.keys, true
			rep := audit.Verify(readStream(t, nc, collective), c.opts)
			if len(rep.Findings) == 0 {
				t.Fatal("no finding")
			}
			found := false
			for _, f := range rep.Findings {
				found = found || fmt.Sprintf("%s %d", f.Kind, f.Seq) == c.want && f.Host == "web1"
			}
			if !found {
				t.Fatalf("findings %v, want %q on web1", rep.Findings, c.want)
			}
		})
	}
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) { w.t.Log(string(b)); return len(b), nil }

// BenchmarkShip is the shipping rate of one host to a local broker, in
// lines per second (one line in flight at a time).
func BenchmarkShip(b *testing.B) {
	s := brokertest.Start(b)
	nc := connect(b, s.ClientURL())
	h := newHost(b, "web1", b.TempDir())
	h.log.CheckpointEvery = 1000
	h.start(nc, "signet")
	h.write(1)
	h.waitShipped()
	b.ResetTimer()
	h.write(b.N)
	h.waitShipped()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lines/s")
}

// A log moved aside while signetd was down starts a new chain: it is
// shipped (not skipped as already sent), and verify reports the restart.
// The first read after a restart ships a log larger than one read (1 MiB)
// in pieces.
func TestShippingAReplacedAndALargeLog(t *testing.T) {
	s := brokertest.Start(t)
	nc := connect(t, s.ClientURL())
	dir := t.TempDir()
	h := newHost(t, "web1", dir)
	h.log.CheckpointEvery = 1000
	h.write(3000) // about 1.2 MB, 3003 lines with the checkpoints
	h.start(nc, "signet")
	h.waitShipped()
	h.stop()
	h.log.Close()
	if err := os.Rename(h.path, h.path+".old"); err != nil {
		t.Fatal(err)
	}
	l, err := audit.Open(h.path)
	if err != nil {
		t.Fatal(err)
	}
	l.Identity, l.Signer = h.id, h.key
	h.log = l
	h.write(2)
	h.start(nc, "signet")
	h.waitShipped()
	rep := audit.Verify(readStream(t, nc, "signet"), audit.VerifyOptions{HostKey: h.keys, FromStart: true})
	if len(rep.Findings) != 2 || rep.Findings[0].Kind != audit.FindingEdited || rep.Findings[0].Seq != 1 || rep.Hosts[0].Last != 3003 {
		t.Fatalf("findings %v, summary %+v", rep.Findings, rep.Hosts)
	}
}

// A broker user can publish a whole chain under a host name of their
// choosing; without that host in known_hosts it is reported, never
// trusted.
func TestVerifyFlagsAMadeUpHost(t *testing.T) {
	s := brokertest.Start(t)
	nc := connect(t, s.ClientURL())
	h := newHost(t, "web1", t.TempDir())
	h.start(nc, "signet")
	h.write(2)
	h.waitShipped()
	var buf bytes.Buffer
	l := audit.New(&buf)
	l.Identity = "web99"
	l.Audit(audittest.Record(t, h.op, "alice", "web99", "req1", "package", "update", nil))
	js, _ := jetstream.New(nc)
	if _, err := js.Publish(context.Background(), Subject("signet", "web99"), bytes.TrimSuffix(buf.Bytes(), []byte("\n"))); err != nil {
		t.Fatal(err)
	}
	rep := audit.Verify(readStream(t, nc, "signet"), audit.VerifyOptions{HostKey: h.keys, FromStart: true})
	if len(rep.Findings) != 1 || rep.Findings[0].Host != "web99" || rep.Findings[0].Kind != audit.FindingUnknown {
		t.Fatalf("findings %v", rep.Findings)
	}
}
