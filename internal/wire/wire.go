// Package wire is the byte-level codec of signet's signed envelope: the
// frame that carries a request or a reply payload together with its SSHSIG
// signature. The bus package gives the frame its meaning.
//
// A frame is:
//
//	"SGNT"         4 bytes, magic
//	version        1 byte, 1
//	kind           1 byte, 'Q' request or 'R' reply
//	payload length 4 bytes, big endian
//	payload        JSON, exactly the bytes that were signed
//	sig length     4 bytes, big endian
//	signature      binary SSHSIG blob over the payload
//
// Parsing is strict: trailing bytes, an unknown version or kind and lengths
// that overrun the frame are errors, so marshalling a parsed frame gives back
// the same bytes.
package wire

import (
	"encoding/binary"
	"fmt"
)

// Kind says what a frame carries.
type Kind byte

// Frame kinds.
const (
	KindRequest Kind = 'Q'
	KindReply   Kind = 'R'
)

const (
	magic      = "SGNT"
	version    = 1
	headerSize = 4 + 1 + 1 + 4
)

// Envelope is a parsed frame. Payload and Sig alias the parsed bytes.
type Envelope struct {
	Kind    Kind
	Payload []byte
	Sig     []byte
}

// ParseError reports a malformed frame and where it broke.
type ParseError struct {
	Offset int
	Msg    string
}

func (e *ParseError) Error() string {
	return fmt.Sprintf("wire: malformed envelope at byte %d: %s", e.Offset, e.Msg)
}

// Parse parses a frame.
func Parse(b []byte) (*Envelope, error) {
	if len(b) < headerSize {
		return nil, &ParseError{0, fmt.Sprintf("%d bytes is shorter than the %d-byte header", len(b), headerSize)}
	}
	if string(b[:4]) != magic {
		return nil, &ParseError{0, "not a signet envelope (bad magic)"}
	}
	if b[4] != version {
		return nil, &ParseError{4, fmt.Sprintf("unsupported version %d", b[4])}
	}
	k := Kind(b[5])
	if k != KindRequest && k != KindReply {
		return nil, &ParseError{5, fmt.Sprintf("unknown kind %q", b[5])}
	}
	off := 6
	plen := binary.BigEndian.Uint32(b[off:])
	off += 4
	if uint64(plen) > uint64(len(b)-off) {
		return nil, &ParseError{6, fmt.Sprintf("payload length %d overruns the envelope", plen)}
	}
	payload := b[off : off+int(plen)]
	off += int(plen)
	if len(b)-off < 4 {
		return nil, &ParseError{off, "truncated signature length"}
	}
	slen := binary.BigEndian.Uint32(b[off:])
	off += 4
	if uint64(slen) > uint64(len(b)-off) {
		return nil, &ParseError{off - 4, fmt.Sprintf("signature length %d overruns the envelope", slen)}
	}
	sig := b[off : off+int(slen)]
	off += int(slen)
	if off != len(b) {
		return nil, &ParseError{off, fmt.Sprintf("%d trailing bytes", len(b)-off)}
	}
	return &Envelope{Kind: k, Payload: payload, Sig: sig}, nil
}

// Marshal returns the frame's bytes.
func (e *Envelope) Marshal() []byte {
	b := make([]byte, 0, headerSize+len(e.Payload)+4+len(e.Sig))
	b = append(b, magic...)
	b = append(b, version, byte(e.Kind))
	b = binary.BigEndian.AppendUint32(b, uint32(len(e.Payload)))
	b = append(b, e.Payload...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(e.Sig)))
	b = append(b, e.Sig...)
	return b
}
