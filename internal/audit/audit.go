// Package audit writes signetd's audit log: one JSON line per request,
// accepted or refused, saying who asked for what, with which parameters,
// what was decided, the result and how long it took.
//
// # Hash chain
//
// Every line carries "seq" (1, 2, 3... per host, never reset by a restart
// or a rotation) and "prev", the lowercase hex SHA-256 of the exact bytes
// of the previous line without its newline ("" for seq 1). The line is
//
//	{"seq":N,"prev":"HEX",<the record's JSON fields>}\n
//
// and those bytes, as written, are what the next line hashes: a verifier
// never re-encodes a record. At intervals the host writes a checkpoint
// line (decision "checkpoint") whose "checkpoint" field holds the seq and
// hash of the line before it, signed with the host key under the SSHSIG
// namespace CheckpointNamespace; see CheckpointMessage. Verify checks a
// sequence of lines and reports edited, deleted, reordered and truncated
// records by host and seq.
package audit

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"golang.org/x/crypto/ssh"

	"github.com/signetbus/signet/bus"
	"github.com/signetbus/signet/internal/redact"
)

// Log is an append-only JSON-lines audit log. It implements bus.Auditor:
// a record that cannot be written is an error the responder acts on (it
// refuses an action whose start cannot be recorded, and logs the rest at
// error level), never a message lost on stderr.
type Log struct {
	mu   sync.Mutex
	path string
	w    io.Writer
	f    *os.File
	// The chain: the seq of the last line written and its hash; opened
	// tells Reopen that the tail was already read.
	seq    uint64
	head   string
	opened bool
	// since counts the records since the last checkpoint.
	since  int
	notify chan struct{}
	// Identity names the host in checkpoint lines.
	Identity string
	// HostCert is the host certificate of Signer's key (bus.EncodeCert),
	// if the host has one; checkpoints carry it.
	HostCert string
	// Signer signs checkpoints (the host key). Nil: no checkpoints.
	Signer ssh.Signer
	// CheckpointEvery writes a checkpoint after this many records; 0: only
	// when Checkpoint is called.
	CheckpointEvery int
	// Sensitive names the parameters of an action that its plugin declares
	// sensitive; their values are never written. signetd sets it to
	// agents.Host.SensitiveParams. Nil: only names that look secret are
	// masked.
	Sensitive func(agent, action string) map[string]bool
}

// Open opens (creating it 0600, and its directory 0750) the audit log at
// path for appending. An existing log with a looser mode is tightened to
// 0600. It refuses a log that is a symbolic link or not a regular file, and
// a directory that others may write to (they could swap the log).
func Open(path string) (*Log, error) {
	l := &Log{path: path, notify: make(chan struct{}, 1)}
	if err := l.Reopen(); err != nil {
		return nil, err
	}
	return l, nil
}

// New writes records to w (tests, or stdout in the lab). The chain starts
// at seq 1.
func New(w io.Writer) *Log { return &Log{w: w, opened: true, notify: make(chan struct{}, 1)} }

// Reopen reopens the file, for log rotation (signetd does it on SIGHUP).
// The first open reads the last line to continue the chain; a log whose
// last line is incomplete or not a record is an error (ErrCorruptTail),
// never a silent new chain. A reopen that finds a new, empty file keeps the
// chain: the next line continues the seq, and with a Signer the new file
// begins with a checkpoint, so each file is checkable on its own.
func (l *Log) Reopen() error {
	if l.path == "" {
		return nil
	}
	dir := filepath.Dir(l.path)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	if st, err := os.Stat(dir); err != nil {
		return fmt.Errorf("audit log: %w", err)
	} else if st.Mode().Perm()&0o002 != 0 {
		return fmt.Errorf("audit log: directory %s is writable by anyone (mode %v): anyone could replace the log; use a directory only signetd's user can write, such as /var/log/signet", dir, st.Mode().Perm())
	}
	f, err := os.OpenFile(l.path, os.O_RDWR|os.O_APPEND|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("audit log: %w", err)
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return fmt.Errorf("audit log: %s is not a regular file", l.path)
	}
	if st.Mode().Perm() != 0o600 {
		if err := f.Chmod(0o600); err != nil {
			f.Close()
			return fmt.Errorf("audit log: tighten mode of %s to 0600: %w", l.path, err)
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.opened {
		seq, head, err := readTail(f, st.Size())
		if err != nil {
			f.Close()
			return fmt.Errorf("%s: %w", l.path, err)
		}
		l.seq, l.head, l.opened = seq, head, true
	}
	old := l.f
	l.f, l.w = f, f
	if old != nil {
		old.Close()
		if st.Size() == 0 && l.seq > 0 && l.Signer != nil {
			if err := l.checkpointLocked(); err != nil {
				return err
			}
		}
	}
	return nil
}

// Seq is the seq of the last line written (0 before the first).
func (l *Log) Seq() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.seq
}

// Audit writes one record, redacted by Redact. A record that cannot be
// written whole (a full disk, an I/O error) is an error.
func (l *Log) Audit(rec *bus.AuditRecord) error {
	r := l.Redact(rec)
	body, err := json.Marshal(struct {
		*bus.AuditRecord
		Signed *Signed `json:"signed,omitempty"`
	}{&r, signedEvidence(rec, &r)})
	if err != nil {
		return fmt.Errorf("audit log: encode record: %w", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.appendLocked(body); err != nil {
		return err
	}
	l.since++
	if l.Signer != nil && l.CheckpointEvery > 0 && l.since >= l.CheckpointEvery {
		return l.checkpointLocked()
	}
	return nil
}

// appendLocked writes body (a JSON object) as the next line of the chain.
func (l *Log) appendLocked(body []byte) error {
	b := chainLine(l.seq+1, l.head, body)
	if n, err := l.w.Write(b); err != nil {
		if n > 0 && l.f != nil {
			// A short write (full disk) would leave half a line that
			// corrupts the next record: cut it off again. The size is
			// read only here, not before every write (one system call
			// less per record: docs/performance.md).
			if st, serr := l.f.Stat(); serr == nil && st.Size() >= int64(n) {
				_ = l.f.Truncate(st.Size() - int64(n))
			}
		}
		return fmt.Errorf("audit log: write: %w", err)
	}
	l.seq++
	l.head = LineHash(b[:len(b)-1])
	select {
	case l.notify <- struct{}{}:
	default:
	}
	return nil
}

// Redact returns a copy of rec fit to be written: the values of
// parameters declared sensitive or whose names look secret are replaced by
// "[redacted]", and redact.String removes credentials from every other
// parameter, the reason and the summary. The values of the sensitive
// parameters are also removed wherever they appear in the reason and the
// summary (a plugin's error may quote them).
func (l *Log) Redact(rec *bus.AuditRecord) bus.AuditRecord {
	r := *rec
	var sens map[string]bool
	if l.Sensitive != nil && len(r.Params) > 0 {
		sens = l.Sensitive(r.Agent, r.Action)
	}
	r.Params = redact.Params(r.Params, func(name string) bool { return sens[name] })
	secrets := redact.Values(rec.Params, func(name string) bool { return sens[name] })
	r.Reason = redact.Scrub(redact.String(r.Reason), secrets)
	r.Summary = redact.Scrub(redact.String(r.Summary), secrets)
	return r
}

// Close closes the file.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f != nil {
		return l.f.Close()
	}
	return nil
}
