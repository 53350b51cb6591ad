// Package ship copies a host's audit log to a JetStream stream, so that a
// copy lives off the host, and reads it back for `signet audit`.
//
// The shipper reads the log file itself, line by line in seq order, and
// publishes each line's exact bytes to SUBJECT = COLLECTIVE.audit.IDENTITY
// in the stream Stream(COLLECTIVE), with the JetStream message id
// IDENTITY:SEQ:HASH (duplicates inside the stream's window are dropped). It
// moves on only after the broker acknowledged the line, and remembers the
// last acknowledged seq in a state file beside the log, so a broker outage
// or a restart of signetd never leaves a gap: shipping resumes at the next
// seq. A rotated log (renamed, a new file created) is read to its end
// before the new file.
package ship

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/signetbus/signet/internal/audit"
	"github.com/signetbus/signet/internal/replicas"
)

// Stream is the JetStream stream that holds a collective's audit lines.
func Stream(collective string) string { return "signet_audit_" + collective }

// Subject is where one host's audit lines are published.
func Subject(collective, identity string) string { return collective + ".audit." + identity }

// EnsureStream creates the audit stream with n copies (replicas.Auto: 3
// on a cluster, 1 otherwise) if it does not exist. The stream keeps
// everything (no age or size limit): retention and replicas of an
// existing stream are the operator's choice, see docs/operations.md.
func EnsureStream(ctx context.Context, js jetstream.JetStream, collective string, n int) (jetstream.Stream, error) {
	st, err := js.Stream(ctx, Stream(collective))
	if err == nil {
		return st, nil
	}
	if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("ship: audit stream: %w", err)
	}
	st, err = replicas.CreateStream(ctx, js, jetstream.StreamConfig{
		Name: Stream(collective), Subjects: []string{collective + ".audit.>"},
		Storage: jetstream.FileStorage, Duplicates: 2 * time.Minute,
		Description: "signet audit records and checkpoints, one subject per host",
	}, n)
	if err != nil && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		return nil, fmt.Errorf("ship: create audit stream: %w", err)
	}
	if err != nil {
		return js.Stream(ctx, Stream(collective))
	}
	return st, nil
}

// Config configures a Shipper.
type Config struct {
	// Conn is the broker connection; it should reconnect forever.
	Conn *nats.Conn
	// Collective and Identity name the stream subject.
	Collective string
	Identity   string
	// Path is the audit log.
	Path string
	// State is the file that remembers the last acknowledged seq; default
	// Path + ".shipped".
	State string
	// Replicas is how many copies the broker keeps of the audit stream
	// when the shipper creates it; replicas.Auto (0): 3 on a cluster, 1 on
	// a single broker.
	Replicas int
	// Wake is signalled when the log was written (audit.Log.Written).
	Wake <-chan struct{}
	// Poll is how often the file is read without a Wake; default 1s.
	Poll time.Duration
	// Retry is the wait after a failed publish; default 1s.
	Retry time.Duration
	// Timeout bounds the wait for one acknowledgement; default 5s.
	Timeout time.Duration
	// Linger is how long the shipper waits after a Wake before it reads
	// the log, so that the lines of one request (its "started" record and
	// its result) and of requests close together are read and shipped in
	// one pass; default 20ms. Negative: no wait.
	Linger time.Duration
	// SaveEvery bounds how often the state file is rewritten; default 1s.
	// Run saves it once more when it stops. After a crash at most the
	// lines of the last SaveEvery are shipped again, and the stream drops
	// those copies (its duplicate window is 2 minutes).
	SaveEvery time.Duration
	Logger    *slog.Logger
}

// Shipper ships one audit log.
type Shipper struct {
	cfg   Config
	js    jetstream.JetStream
	acked atomic.Uint64
	log   *slog.Logger
	// down is set while the broker does not acknowledge, to log the outage
	// once and its end once.
	down bool
	// saved is the seq in the state file; savedAt when it was written;
	// saves counts the writes (tests).
	saved   uint64
	savedAt time.Time
	saves   int
}

// New returns a shipper; Run starts it.
func New(cfg Config) (*Shipper, error) {
	if cfg.State == "" {
		cfg.State = cfg.Path + ".shipped"
	}
	if cfg.Poll <= 0 {
		cfg.Poll = time.Second
	}
	if cfg.Retry <= 0 {
		cfg.Retry = time.Second
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.Linger == 0 {
		cfg.Linger = 20 * time.Millisecond
	}
	if cfg.SaveEvery <= 0 {
		cfg.SaveEvery = time.Second
	}
	js, err := jetstream.New(cfg.Conn)
	if err != nil {
		return nil, fmt.Errorf("ship: %w", err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Shipper{cfg: cfg, js: js, log: log.With("audit_log", cfg.Path)}
	seq, err := readState(cfg.State)
	if err != nil {
		return nil, err
	}
	s.acked.Store(seq)
	s.saved = seq
	return s, nil
}

// Acked is the last seq the broker acknowledged.
func (s *Shipper) Acked() uint64 { return s.acked.Load() }

func readState(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("ship: state: %w", err)
	}
	seq, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("ship: state file %s is not a seq (%w): delete it to ship the whole log again (the stream drops lines it already holds within 2 minutes, and verify accepts identical copies)", path, err)
	}
	return seq, nil
}

func (s *Shipper) saveState(seq uint64) error {
	tmp := s.cfg.State + ".tmp"
	if err := os.WriteFile(tmp, strconv.AppendUint(nil, seq, 10), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, s.cfg.State)
}

// save writes the acknowledged seq to the state file when it moved, at
// most once per SaveEvery unless force: rewriting the file for every line
// cost a host more CPU than shipping the line (docs/performance.md).
func (s *Shipper) save(force bool) {
	seq := s.acked.Load()
	if seq == s.saved || (!force && time.Since(s.savedAt) < s.cfg.SaveEvery) {
		return
	}
	s.saves++
	if err := s.saveState(seq); err != nil {
		s.log.Error("cannot save the shipped seq; after a restart lines are shipped again (the stream drops copies within 2 minutes)", "err", err)
		return
	}
	s.saved, s.savedAt = seq, time.Now()
}

// file is the log being read.
type file struct {
	f       *os.File
	ino     uint64
	off     int64
	pending []byte
	buf     []byte // read buffer, kept between reads
}

func openFile(path string) (*file, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &file{f: f, ino: inode(st)}, nil
}

func inode(st os.FileInfo) uint64 {
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		return s.Ino
	}
	return 0
}

// lines returns the complete lines added since the last call.
// It returns after about 1 MiB, so a large log is shipped in pieces.
func (f *file) lines() ([][]byte, error) {
	if f.buf == nil {
		f.buf = make([]byte, 64<<10)
	}
	buf := f.buf
	var out [][]byte
	for read := 0; read < 1<<20 || len(out) == 0; read += len(buf) {
		n, err := f.f.ReadAt(buf, f.off)
		f.off += int64(n)
		f.pending = append(f.pending, buf[:n]...)
		for {
			i := bytes.IndexByte(f.pending, '\n')
			if i < 0 {
				break
			}
			out = append(out, f.pending[:i:i])
			f.pending = f.pending[i+1:]
		}
		if len(f.pending) == 0 {
			f.pending = nil // the lines out holds keep their own array
		}
		if err == io.EOF || n == 0 {
			return out, nil
		}
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

// Run ships until ctx ends. It returns only ctx's error or a failure to
// read the log.
func (s *Shipper) Run(ctx context.Context) error {
	var cur *file
	defer func() {
		if cur != nil {
			cur.f.Close()
		}
		s.save(true)
	}()
	ectx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	_, _ = EnsureStream(ectx, s.js, s.cfg.Collective, s.cfg.Replicas) // publish retries if the broker is down
	cancel()
	// The log ends below the seq already shipped: it was moved aside or
	// replaced, and a new chain started. Ship the new chain; verify
	// reports the restart (two records with the same seq).
	if f, err := os.OpenFile(s.cfg.Path, os.O_RDONLY|syscall.O_NOFOLLOW, 0); err == nil {
		last, err := audit.LastSeq(f)
		f.Close()
		if err == nil && last < s.acked.Load() {
			s.log.Error("audit log ends below the seq already shipped: it was replaced; shipping the new chain", "shipped", s.acked.Load(), "log_ends", last)
			s.acked.Store(0)
		}
	}
	// After a restart the next seq may be in the rotated file still
	// (logrotate's delaycompress keeps it as PATH.1).
	if old, err := openFile(s.cfg.Path + ".1"); err == nil {
		err := s.drain(ctx, old)
		old.f.Close()
		if err != nil {
			return err
		}
	}
	tick := time.NewTicker(s.cfg.Poll)
	defer tick.Stop()
	// checkFile is set when the path must be looked at again: on the
	// poll tick, and after a wake that found nothing new in the open file
	// (the line went to a new file). A wake that found new lines needs no
	// stat: a host writes a few lines per request.
	checkFile := true
	for {
		if cur == nil {
			f, err := openFile(s.cfg.Path)
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("ship: %w", err)
			}
			cur = f
		}
		if cur != nil {
			before := cur.off
			if err := s.drain(ctx, cur); err != nil {
				return err
			}
			if cur.off == before {
				checkFile = true
			}
			if checkFile {
				// Rotated: the old file is read to its end, then the new one.
				if st, err := os.Stat(s.cfg.Path); err == nil && inode(st) != cur.ino {
					if err := s.drain(ctx, cur); err != nil {
						return err
					}
					cur.f.Close()
					cur = nil
					continue
				} else if err == nil && st.Size() < cur.off {
					s.log.Error("audit log shrank: it was truncated or replaced in place; shipping it again from its start", "size", st.Size(), "read", cur.off)
					cur.off, cur.pending = 0, nil
					continue
				}
			}
		}
		s.save(false)
		checkFile = false
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.cfg.Wake:
			if s.cfg.Linger > 0 {
				// Let the rest of the request's lines arrive: one pass
				// then reads and ships them together.
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(s.cfg.Linger):
				}
				select {
				case <-s.cfg.Wake: // already covered by this pass
				default:
				}
			}
		case <-tick.C:
			checkFile = true
		}
	}
}

// drain ships every complete line of f not acknowledged yet.
func (s *Shipper) drain(ctx context.Context, f *file) error {
	for {
		lines, err := f.lines()
		if err != nil {
			return fmt.Errorf("ship: read %s: %w", s.cfg.Path, err)
		}
		if len(lines) == 0 {
			return nil
		}
		if err := s.ship(ctx, lines); err != nil {
			return err
		}
	}
}

// ship publishes the lines above the acknowledged seq, in order.
func (s *Shipper) ship(ctx context.Context, lines [][]byte) error {
	last := s.acked.Load()
	for _, line := range lines {
		seq := lineSeq(line)
		if seq == 0 {
			continue // not chained: verify reports it from the host file
		}
		if seq <= last {
			continue
		}
		if last > 0 && seq != last+1 {
			s.log.Error("audit log has a gap: shipping what is there, verify will report it", "after", last, "next", seq)
		}
		if err := s.publish(ctx, seq, line); err != nil {
			return err
		}
		last = seq
		s.acked.Store(last)
	}
	return nil
}

// lineSeq returns a line's seq, 0 when it has none. A line the log wrote
// starts {"seq":N, (audit's chainLine), read without decoding the rest;
// anything else is decoded as JSON.
func lineSeq(line []byte) uint64 {
	const prefix = `{"seq":`
	if rest, ok := bytes.CutPrefix(line, []byte(prefix)); ok {
		if i := bytes.IndexByte(rest, ','); i > 0 && i <= 20 {
			if seq, err := strconv.ParseUint(string(rest[:i]), 10, 64); err == nil {
				return seq
			}
		}
	}
	var e chainFields
	if err := json.Unmarshal(line, &e); err != nil {
		return 0
	}
	return e.Seq
}

// publish sends one line until the broker acknowledges it or ctx ends.
// One line is in flight at a time, on purpose: with several, a line lost
// in a broker restart would be sent again after the next one was stored,
// and the stream would hold them out of order (verify reports that).
func (s *Shipper) publish(ctx context.Context, seq uint64, line []byte) error {
	subj := Subject(s.cfg.Collective, s.cfg.Identity)
	// The id names the line's own hash: a broker user who cannot predict
	// the host's next line cannot claim its id first and get it dropped as
	// a duplicate.
	id := fmt.Sprintf("%s:%d:%.32s", s.cfg.Identity, seq, audit.LineHash(line))
	for {
		pctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
		_, err := s.js.Publish(pctx, subj, line, jetstream.WithMsgID(id), jetstream.WithExpectStream(Stream(s.cfg.Collective)))
		cancel()
		if err == nil {
			if s.down {
				s.log.Info("audit shipping caught up with the broker", "seq", seq)
				s.down = false
			}
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !s.down {
			s.log.Warn("audit shipping paused: the broker does not acknowledge; the log keeps every line and shipping resumes from it", "seq", seq, "err", err)
			s.down = true
		}
		// The stream may be missing (a new broker, or deleted): make it.
		ectx, ecancel := context.WithTimeout(ctx, s.cfg.Timeout)
		_, _ = EnsureStream(ectx, s.js, s.cfg.Collective, s.cfg.Replicas)
		ecancel()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(s.cfg.Retry):
		}
	}
}

// chainFields are the only fields the shipper decodes.
type chainFields struct {
	Seq uint64 `json:"seq"`
}
