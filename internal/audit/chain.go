package audit

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/signetbus/signet/bus"
	"github.com/signetbus/signet/internal/sshsig"
)

// CheckpointNamespace is the SSHSIG namespace of checkpoint signatures: a
// checkpoint signature can never pass as a request or a reply.
const CheckpointNamespace = "signet-audit-checkpoint@v1"

// DecisionCheckpoint marks a checkpoint line.
const DecisionCheckpoint = "checkpoint"

// ErrCorruptTail is returned by Open for a log whose last line is
// incomplete or not a record: the chain cannot continue from it.
var ErrCorruptTail = errors.New("audit: the last line of the log is incomplete or not an audit record")

// corruptTail explains an ErrCorruptTail and what to do.
func corruptTail(detail string) error {
	return fmt.Errorf("%w (%s), so the hash chain cannot continue from it: run `signet audit verify --file` on the log, keep it as evidence and move it aside; signetd then starts a new chain at seq 1", ErrCorruptTail, detail)
}

// Entry is one line of the log as read back: the chain fields, the record
// and, on a checkpoint line, the checkpoint.
type Entry struct {
	Seq  uint64 `json:"seq"`
	Prev string `json:"prev"`
	bus.AuditRecord
	// Signed is the request's signature evidence (see Signed).
	Signed     *Signed     `json:"signed,omitempty"`
	Checkpoint *Checkpoint `json:"checkpoint,omitempty"`
}

// Checkpoint is the host's signature over the chain up to and including
// line Seq, whose hash is Hash.
type Checkpoint struct {
	Seq  uint64 `json:"seq"`
	Hash string `json:"hash"`
	// Sig is the base64 SSHSIG blob over CheckpointMessage.
	Sig string `json:"sig"`
	// HostCert is the host's certificate (bus.EncodeCert) when it has one:
	// a verifier that trusts the host CA (@cert-authority) and has no
	// pinned key for the host checks the signature with the certified key.
	HostCert string `json:"host_cert,omitempty"`
}

// CheckpointMessage is the exact message a checkpoint signs:
//
//	signet-audit-checkpoint v1\nhost IDENTITY\nseq N\nhash HEX\n
func CheckpointMessage(identity string, seq uint64, hash string) []byte {
	return fmt.Appendf(nil, "signet-audit-checkpoint v1\nhost %s\nseq %d\nhash %s\n", identity, seq, hash)
}

// LineHash is the hash the next line's "prev" holds: lowercase hex SHA-256
// of the line's bytes without the newline.
func LineHash(line []byte) string {
	h := sha256.Sum256(line)
	return hex.EncodeToString(h[:])
}

// chainLine returns {"seq":N,"prev":"HEX",...body's fields}\n.
func chainLine(seq uint64, prev string, body []byte) []byte {
	b := make([]byte, 0, len(body)+100)
	b = append(b, `{"seq":`...)
	b = strconv.AppendUint(b, seq, 10)
	b = append(b, `,"prev":"`...)
	b = append(b, prev...)
	b = append(b, '"')
	if len(body) > 2 {
		b = append(b, ',')
	}
	b = append(b, body[1:]...)
	return append(b, '\n')
}

// ParseLine decodes one line (without its newline).
func ParseLine(line []byte) (*Entry, error) {
	var e Entry
	if err := json.Unmarshal(line, &e); err != nil {
		return nil, err
	}
	return &e, nil
}

// Written is signalled (without blocking, so coalesced) after each line is
// written: the shipper reads the file when it fires.
func (l *Log) Written() <-chan struct{} { return l.notify }

// Head returns the seq and hash of the last line written.
func (l *Log) Head() (uint64, string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.seq, l.head
}

// Checkpoint writes a signed checkpoint line now, even when nothing was
// written since the last one: signetd calls it at an interval, and the
// steady beat lets a verifier notice a copy whose tail was cut. Without a
// Signer it does nothing.
func (l *Log) Checkpoint() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.Signer == nil {
		return nil
	}
	return l.checkpointLocked()
}

func (l *Log) checkpointLocked() error {
	sig, err := sshsig.Sign(rand.Reader, l.Signer, CheckpointNamespace, CheckpointMessage(l.Identity, l.seq, l.head))
	if err != nil {
		return fmt.Errorf("audit log: sign checkpoint: %w", err)
	}
	body, err := json.Marshal(struct {
		bus.AuditRecord
		Checkpoint Checkpoint `json:"checkpoint"`
	}{bus.AuditRecord{Time: time.Now().UTC(), Identity: l.Identity, Decision: DecisionCheckpoint},
		Checkpoint{Seq: l.seq, Hash: l.head, Sig: base64.StdEncoding.EncodeToString(sig.Marshal()), HostCert: l.HostCert}})
	if err != nil {
		return fmt.Errorf("audit log: encode checkpoint: %w", err)
	}
	if err := l.appendLocked(body); err != nil {
		return err
	}
	l.since = 0
	return nil
}

// readTail returns the seq and hash of the last line of f (size bytes). A
// last line written before the chain existed (no seq) starts the chain
// after it.
func readTail(f *os.File, size int64) (uint64, string, error) {
	if size == 0 {
		return 0, "", nil
	}
	const chunk = 64 << 10
	var buf []byte
	end := size
	for {
		start := max(end-chunk, 0)
		part := make([]byte, end-start)
		if _, err := f.ReadAt(part, start); err != nil && err != io.EOF {
			return 0, "", fmt.Errorf("read the last line: %w", err)
		}
		buf = append(part, buf...)
		if len(buf) > 0 && buf[len(buf)-1] != '\n' {
			return 0, "", corruptTail(fmt.Sprintf("it ends in an incomplete line at byte %d", size))
		}
		if i := bytes.LastIndexByte(buf[:len(buf)-1], '\n'); i >= 0 || start == 0 {
			line := buf[i+1 : len(buf)-1]
			e, err := ParseLine(line)
			if err != nil {
				return 0, "", corruptTail(err.Error())
			}
			return e.Seq, LineHash(line), nil
		}
		if size-start > 16<<20 {
			return 0, "", corruptTail("the last line is longer than 16 MiB")
		}
		end = start
	}
}

// LastSeq returns the seq of the last line of the log open in f (0 for an
// empty log or one written before the chain existed).
func LastSeq(f *os.File) (uint64, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	seq, _, err := readTail(f, st.Size())
	return seq, err
}
