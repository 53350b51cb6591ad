package audit

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/signetbus/signet/bus"
	"github.com/signetbus/signet/internal/keys/keytest"
)

var newHostKey = keytest.Signer

func keysOf(host string, s ssh.Signer) func(string) (ssh.PublicKey, bool) {
	return func(id string) (ssh.PublicKey, bool) {
		if id == host {
			return s.PublicKey(), true
		}
		return nil, false
	}
}

func openChained(t testing.TB, path string, key ssh.Signer, every int) *Log {
	t.Helper()
	l, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	l.Identity, l.Signer, l.CheckpointEvery = "web1", key, every
	return l
}

func write(t testing.TB, l *Log, n int, from int) {
	t.Helper()
	for i := range n {
		if err := l.Audit(&bus.AuditRecord{Time: time.Unix(int64(from+i), 0).UTC(), Identity: "web1", RequestID: fmt.Sprintf("r%d", from+i),
			Agent: "package", Action: "update", Params: map[string]any{"package": "nginx"}, Decision: bus.DecisionAccepted, Status: bus.StatusOK}); err != nil {
			t.Fatal(err)
		}
	}
}

func seqs(t testing.TB, data []byte) []uint64 {
	t.Helper()
	var out []uint64
	for _, ln := range FileLines(data, "x") {
		e, err := ParseLine(ln.Raw)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, e.Seq)
	}
	return out
}

func verifyClean(t *testing.T, key ssh.Signer, fromStart bool, data []byte) *Report {
	t.Helper()
	rep := Verify(FileLines(data, "audit.jsonl"), VerifyOptions{HostKey: keysOf("web1", key), FromStart: fromStart})
	if len(rep.Findings) > 0 {
		t.Fatalf("findings on an untouched log: %v\n%s", rep.Findings, data)
	}
	return rep
}

// The chain continues across a restart and a rotation, and each rotated
// file verifies on its own.
func TestChainSurvivesRestartAndRotation(t *testing.T) {
	key := newHostKey(t)
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l := openChained(t, path, key, 3)
	write(t, l, 4, 0) // seqs 1-3, checkpoint 4, record 5
	l.Close()
	l = openChained(t, path, key, 3)
	if seq, _ := l.Head(); seq != 5 {
		t.Fatalf("after restart the head is seq %d, want 5", seq)
	}
	write(t, l, 1, 10) // seq 6
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	if err := l.Reopen(); err != nil {
		t.Fatal(err)
	}
	write(t, l, 1, 20) // checkpoint 7 opens the new file, record 8
	l.Close()
	old, _ := os.ReadFile(path + ".1")
	cur, _ := os.ReadFile(path)
	if got := fmt.Sprint(seqs(t, old), seqs(t, cur)); got != "[1 2 3 4 5 6] [7 8]" {
		t.Fatalf("seqs %s", got)
	}
	rep := verifyClean(t, key, true, append(append([]byte{}, old...), cur...))
	if rep.Hosts[0].Checkpoints != 2 || rep.Hosts[0].Last != 8 || rep.Hosts[0].Unsigned != 1 {
		t.Fatalf("summary %+v", rep.Hosts[0])
	}
	verifyClean(t, key, false, cur)
}

func TestOpenRefusesACorruptTail(t *testing.T) {
	key := newHostKey(t)
	for name, tail := range map[string]string{"incomplete": `{"seq":3,"prev":"ab`, "not a record": "garbage\n"} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "audit.jsonl")
			l := openChained(t, path, key, 0)
			write(t, l, 2, 0)
			l.Close()
			f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
			f.WriteString(tail)
			f.Close()
			_, err := Open(path)
			if !errors.Is(err, ErrCorruptTail) {
				t.Fatalf("Open on a corrupt tail: %v, want ErrCorruptTail", err)
			}
		})
	}
}

// A log written before the chain existed continues with seq 1 chained to
// its last line.
func TestChainStartsAfterALegacyLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	os.WriteFile(path, []byte(`{"time":"2026-01-01T00:00:00Z","identity":"web1","decision":"accepted"}`+"\n"), 0o600)
	l := openChained(t, path, nil, 0)
	write(t, l, 1, 0)
	l.Close()
	data, _ := os.ReadFile(path)
	lines := FileLines(data, "x")
	e, _ := ParseLine(lines[1].Raw)
	if e.Seq != 1 || e.Prev != LineHash(lines[0].Raw) {
		t.Fatalf("first chained line %+v", e)
	}
}

// tamperLog writes 9 lines (checkpoint every 4: seqs 5 and 10... ) and
// returns them.
func tamperLog(t *testing.T, key ssh.Signer) [][]byte {
	t.Helper()
	var buf bytes.Buffer
	l := New(&buf)
	l.Identity, l.Signer, l.CheckpointEvery = "web1", key, 4
	write(t, l, 8, 0) // 1-4, cp 5, 6-9, cp 10
	lines := bytes.SplitAfter(buf.Bytes(), []byte("\n"))
	return lines[:len(lines)-1]
}

// rechain recomputes every prev from line i on, as an attacker without the
// host key would after an edit.
func rechain(t *testing.T, lines [][]byte, from int) {
	for i := max(from, 1); i < len(lines); i++ {
		e, err := ParseLine(bytes.TrimSuffix(lines[i], []byte("\n")))
		if err != nil {
			t.Fatal(err)
		}
		old := fmt.Sprintf(`"prev":"%s"`, e.Prev)
		lines[i] = bytes.Replace(lines[i], []byte(old), fmt.Appendf(nil, `"prev":"%s"`, LineHash(bytes.TrimSuffix(lines[i-1], []byte("\n")))), 1)
	}
}

func TestVerifyFindsTamperingInAFile(t *testing.T) {
	key := newHostKey(t)
	other := newHostKey(t)
	cases := []struct {
		name   string
		tamper func(t *testing.T, l [][]byte) [][]byte
		opts   VerifyOptions
		want   string // "kind seq" of the first finding
	}{
		{"edited", func(t *testing.T, l [][]byte) [][]byte {
			l[2] = bytes.Replace(l[2], []byte("nginx"), []byte("ngimx"), 1)
			return l
		}, VerifyOptions{}, "edited 3"},
		{"edited and rechained", func(t *testing.T, l [][]byte) [][]byte {
			l[1] = bytes.Replace(l[1], []byte(`"r1"`), []byte(`"rX"`), 1)
			rechain(t, l, 2)
			return l
		}, VerifyOptions{}, "edited 5"}, // the checkpoint's signed fields no longer match its rewritten prev
		{"deleted", func(t *testing.T, l [][]byte) [][]byte {
			return append(l[:2:2], l[3:]...)
		}, VerifyOptions{}, "deleted 3"},
		{"deleted checkpoint", func(t *testing.T, l [][]byte) [][]byte {
			return append(l[:4:4], l[5:]...)
		}, VerifyOptions{}, "deleted 5"},
		{"reordered", func(t *testing.T, l [][]byte) [][]byte {
			l[2], l[3] = l[3], l[2]
			return l
		}, VerifyOptions{}, "reordered 3"},
		{"truncated mid-line", func(t *testing.T, l [][]byte) [][]byte {
			l[len(l)-1] = l[len(l)-1][:20]
			return l
		}, VerifyOptions{}, "truncated 10"},
		{"truncated whole lines", func(t *testing.T, l [][]byte) [][]byte {
			return l[:7]
		}, VerifyOptions{MaxAge: time.Hour, Now: time.Unix(7200, 0)}, "truncated 7"},
		{"forged checkpoint", func(t *testing.T, l [][]byte) [][]byte {
			var buf bytes.Buffer
			f := New(&buf)
			f.Identity, f.Signer, f.CheckpointEvery = "web1", other, 4
			write(t, f, 4, 0)
			return bytes.SplitAfter(buf.Bytes(), []byte("\n"))[:5]
		}, VerifyOptions{}, "forged 5"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			lines := c.tamper(t, tamperLog(t, key))
			c.opts.HostKey = keysOf("web1", key)
			rep := Verify(FileLines(bytes.Join(lines, nil), "audit.jsonl"), c.opts)
			if len(rep.Findings) == 0 {
				t.Fatalf("no finding")
			}
			f := rep.Findings[0]
			if got := fmt.Sprintf("%s %d", f.Kind, f.Seq); got != c.want {
				t.Fatalf("first finding %q (%s), want %q; all: %v", got, f, c.want, rep.Findings)
			}
			if f.Host != "web1" || !strings.Contains(f.String(), "web1 seq") {
				t.Fatalf("finding does not name the host: %s", f)
			}
		})
	}
	// The untouched log has no finding, and a host missing from
	// known_hosts is said to be unverifiable.
	lines := tamperLog(t, key)
	verifyClean(t, key, true, bytes.Join(lines, nil))
	rep := Verify(FileLines(bytes.Join(lines, nil), "x"), VerifyOptions{})
	if len(rep.Findings) != 1 || rep.Findings[0].Kind != FindingUnknown || rep.Findings[0].Seq != 1 {
		t.Fatalf("without the host key: %v", rep.Findings)
	}
}
