package bus

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
)

// A big pending request (a plan of thousands of hosts) does not fit in one
// message of the broker (max_payload, 1 MB by default). Its signed payload
// is then stored gzip-compressed, in parts: the entry "request.ID" holds
// the signature, the first part, the number of parts and the SHA-256 of
// the compressed bytes; "part.ID.N" (N from 1) hold the rest. The
// requester's signature is over the uncompressed payload, as for a small
// entry, so a broker user who swaps, drops or reorders a part makes an
// entry that does not verify, and `signet approve` re-derives the root
// from the very plan the requester signed. A small entry is stored as it
// always was, readable by older clients.

const (
	// compressAbove is the payload size above which an entry is
	// compressed.
	compressAbove = 64 << 10
	// partBytes is the compressed bytes per stored part (base64 in the
	// entry: about 350 KB, under any sensible max_payload).
	partBytes = 256 << 10
	// maxParts bounds the parts of one entry (64 MiB compressed).
	maxParts = 256
	// maxPendingPayload bounds a decompressed payload.
	maxPendingPayload = 32 << 20
)

// storedPending is a pending request as the bucket holds it: the signed
// payload in clear (Payload), or gzip-compressed in Parts+1 parts, the
// first in Gzip.
type storedPending struct {
	Payload []byte `json:"payload,omitempty"`
	Gzip    []byte `json:"payload_gzip,omitempty"`
	Parts   int    `json:"parts,omitempty"`
	// GzipSHA256 is the SHA-256 of the whole compressed payload, hex.
	GzipSHA256 string `json:"payload_gzip_sha256,omitempty"`
	Sig        []byte `json:"sig"`
}

func partKey(id string, n int) string { return "part." + id + "." + strconv.Itoa(n) }

// storePending writes the signed payload of pending request id: in clear
// when small, otherwise compressed in parts, the parts first.
func (s *ApprovalStore) storePending(ctx context.Context, id string, payload, sig []byte) error {
	e := storedPending{Payload: payload, Sig: sig}
	if len(payload) > compressAbove {
		var buf bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
		if _, err := zw.Write(payload); err != nil {
			return err
		}
		if err := zw.Close(); err != nil {
			return err
		}
		z := buf.Bytes()
		sum := sha256.Sum256(z)
		parts := (len(z) + partBytes - 1) / partBytes
		if parts > maxParts+1 {
			return fmt.Errorf("%w: the pending request is %d bytes compressed, at most %d", ErrApproval, len(z), (maxParts+1)*partBytes)
		}
		for n := 1; n < parts; n++ {
			end := min((n+1)*partBytes, len(z))
			if _, err := s.kv.Put(ctx, partKey(id, n), z[n*partBytes:end]); err != nil {
				return fmt.Errorf("approvals: store part %d of %d of %s: %w", n+1, parts, id, err)
			}
		}
		e = storedPending{Gzip: z[:min(partBytes, len(z))], Parts: parts - 1, GzipSHA256: hex.EncodeToString(sum[:]), Sig: sig}
	}
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	_, err = s.kv.Put(ctx, "request."+id, b)
	return err
}

// payload returns the signed payload of a stored entry, reading its parts
// from the bucket (nil for an entry read without a store: the fuzz test).
// The signature is checked by the caller.
func (s *ApprovalStore) payload(ctx context.Context, id string, e *storedPending) ([]byte, error) {
	if e.Gzip == nil {
		return e.Payload, nil
	}
	if e.Payload != nil {
		return nil, fmt.Errorf("%w: pending request %s holds both a payload and a compressed one", ErrApproval, id)
	}
	if e.Parts < 0 || e.Parts > maxParts {
		return nil, fmt.Errorf("%w: pending request %s in %d parts, at most %d", ErrApproval, id, e.Parts+1, maxParts+1)
	}
	z := append([]byte(nil), e.Gzip...)
	for n := 1; n <= e.Parts; n++ {
		if s == nil {
			return nil, fmt.Errorf("%w: pending request %s: parts not read", ErrApproval, id)
		}
		v, err := s.kv.Get(ctx, partKey(id, n))
		if err != nil {
			return nil, fmt.Errorf("%w: pending request %s: part %d of %d: %v", ErrApproval, id, n+1, e.Parts+1, err)
		}
		z = append(z, v.Value()...)
	}
	if sum := sha256.Sum256(z); hex.EncodeToString(sum[:]) != e.GzipSHA256 {
		return nil, fmt.Errorf("%w: pending request %s: its parts do not have the recorded digest (a part was changed or is missing)", ErrApproval, id)
	}
	zr, err := gzip.NewReader(bytes.NewReader(z))
	if err != nil {
		return nil, fmt.Errorf("%w: pending request %s: %v", ErrApproval, id, err)
	}
	b, err := io.ReadAll(io.LimitReader(zr, maxPendingPayload+1))
	if err != nil {
		return nil, fmt.Errorf("%w: pending request %s: %v", ErrApproval, id, err)
	}
	if len(b) > maxPendingPayload {
		return nil, fmt.Errorf("%w: pending request %s is over %d bytes uncompressed", ErrApproval, id, maxPendingPayload)
	}
	return b, nil
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
