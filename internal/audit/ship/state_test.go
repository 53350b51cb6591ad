package ship

import (
	"log/slog"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/signetbus/signet/internal/broker/brokertest"
)

// Rewriting the state file after every shipped line cost a host more CPU
// than shipping the line: it is now written at most once per SaveEvery
// and when the shipper stops, and still holds the last acknowledged seq
// after a stop.
func TestStateIsSavedOncePerIntervalAndAtStop(t *testing.T) {
	s := brokertest.Start(t)
	nc := connect(t, s.ClientURL())
	h := newHost(t, "web1", t.TempDir())
	sh, err := New(Config{Conn: nc, Collective: "signet", Identity: h.id, Path: h.path, Wake: h.log.Written(),
		Poll: 20 * time.Millisecond, Retry: 20 * time.Millisecond, Timeout: 500 * time.Millisecond,
		SaveEvery: time.Hour, Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	h.runShipper(sh)
	for range 20 {
		h.write(1)
		h.waitShipped() // one pass per line
	}
	h.stop()
	if sh.saves > 2 {
		t.Errorf("the state file was written %d times for 20 passes (want at most: once at the first pass, once at stop)", sh.saves)
	}
	b, err := os.ReadFile(h.path + ".shipped")
	if err != nil {
		t.Fatal(err)
	}
	head, _ := h.log.Head()
	if got, _ := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); got != head {
		t.Fatalf("state file holds seq %d after stop, the log's head is %d", got, head)
	}
}

func TestLineSeq(t *testing.T) {
	for _, c := range []struct {
		line string
		want uint64
	}{
		{`{"seq":12,"prev":"ab","decision":"accepted"}`, 12},
		{`{"seq":1,"prev":""}`, 1},
		{`{ "seq": 7, "prev": "" }`, 7},                             // not the log's own spelling: decoded as JSON
		{`{"time":"2026-01-01T00:00:00Z","decision":"refused"}`, 0}, // before the chain
		{`{"seq":99999999999999999999999,"prev":""}`, 0},
		{`not json`, 0},
	} {
		if got := lineSeq([]byte(c.line)); got != c.want {
			t.Errorf("lineSeq(%s) = %d, want %d", c.line, got, c.want)
		}
	}
}
