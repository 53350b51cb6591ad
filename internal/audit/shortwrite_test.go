package audit

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/signetbus/signet/bus"
)

// A record cut short by a full disk is cut off again: the log still ends
// with a whole line, and once there is room the chain continues from the
// last whole record.
func TestShortWriteLeavesNoHalfLine(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipped: mounting a small tmpfs needs root")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("skipped: cannot mount a tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	path := filepath.Join(dir, "audit.jsonl")
	l, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	rec := func(summary string) *bus.AuditRecord {
		return &bus.AuditRecord{Identity: "web1", Subject: "s", Decision: bus.DecisionAccepted, Summary: summary}
	}
	if err := l.Audit(rec("first")); err != nil {
		t.Fatal(err)
	}
	// Fill the disk, then free one page: a record of two pages is written
	// in part.
	filler, err := os.Create(filepath.Join(dir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	defer filler.Close()
	page := make([]byte, 4096)
	var size int64
	for {
		n, err := filler.Write(page)
		size += int64(n)
		if err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			break
		}
	}
	if err := filler.Truncate(size - 4096); err != nil {
		t.Fatal(err)
	}
	if err := l.Audit(rec(strings.Repeat("x", 9000))); err == nil {
		t.Fatal("a record larger than the free space was written")
	}
	b, _ := os.ReadFile(path)
	if len(b) == 0 || b[len(b)-1] != '\n' || bytes.Count(b, []byte("\n")) != 1 {
		t.Fatalf("after the failed write the log is %d bytes, %d lines, ends %q", len(b), bytes.Count(b, []byte("\n")), b[max(0, len(b)-10):])
	}
	if err := filler.Truncate(0); err != nil {
		t.Fatal(err)
	}
	if err := l.Audit(rec("after")); err != nil {
		t.Fatal(err)
	}
	b, _ = os.ReadFile(path)
	lines := FileLines(b, path)
	if len(lines) != 2 {
		t.Fatalf("%d lines, want 2", len(lines))
	}
	first, err1 := ParseLine(lines[0].Raw)
	second, err2 := ParseLine(lines[1].Raw)
	if err1 != nil || err2 != nil || second.Seq != 2 || second.Prev != LineHash(lines[0].Raw) || first.Summary != "first" {
		t.Fatalf("the chain does not continue: %v %v %+v", err1, err2, second)
	}
}
