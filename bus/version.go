package bus

import (
	"encoding/json"
	"errors"
	"fmt"
)

// Protocol versions. The version is the "v" field of every request and
// reply, covered by their signatures.
//
//   - 1: the first protocol. Late in its life replies gained
//     request_digest (the SHA-256 of the request frame they answer)
//     without a version change, so a protocol 1 reply may lack it; this
//     client refuses such a reply as not bound to its request.
//   - 2: request_digest is part of the protocol: every reply carries it.
//     Nothing else changed: a protocol 2 host answers a protocol 1 request
//     exactly as a protocol 1 host of the last release did.
//
// A host accepts requests of MinProtocolVersion to ProtocolVersion and
// replies in the request's version; a client accepts replies of those
// versions. Anything else is refused with a message naming both sides'
// versions. So hosts may be upgraded before clients; a client upgraded
// first is refused by the hosts still on the previous release until it
// is told to sign in the older version (ClientConfig.Protocol).
const MinProtocolVersion = max(ProtocolVersion-1, 1)

// ErrProtocol is wrapped by the errors that refuse a protocol version.
var ErrProtocol = errors.New("bus: unsupported protocol version")

func speaks() string {
	if MinProtocolVersion == ProtocolVersion {
		return fmt.Sprintf("protocol %d", ProtocolVersion)
	}
	return fmt.Sprintf("protocols %d to %d", MinProtocolVersion, ProtocolVersion)
}

// checkRequestVersion is a host's check of a request's version.
func checkRequestVersion(v int) error {
	switch {
	case v > ProtocolVersion:
		return fmt.Errorf("%w: the request speaks protocol %d, this host speaks %s: upgrade signetd on this host, or sign with the older protocol (client config protocol: %d)",
			ErrProtocol, v, speaks(), ProtocolVersion)
	case v < MinProtocolVersion:
		return fmt.Errorf("%w: the request speaks protocol %d, this host speaks %s: upgrade signet, the client", ErrProtocol, v, speaks())
	}
	return nil
}

// checkReplyVersion is a client's check of a verified reply's version.
func checkReplyVersion(v int) error {
	switch {
	case v > ProtocolVersion:
		return fmt.Errorf("%w: the reply speaks protocol %d, this signet speaks %s: upgrade signet", ErrProtocol, v, speaks())
	case v < MinProtocolVersion:
		return fmt.Errorf("%w: the reply speaks protocol %d, this signet speaks %s: upgrade signetd on that host", ErrProtocol, v, speaks())
	}
	return nil
}

// CheckClientProtocol checks the version a client is asked to sign in
// (ClientConfig.Protocol): MinProtocolVersion to ProtocolVersion.
func CheckClientProtocol(v int) error {
	if v < MinProtocolVersion || v > ProtocolVersion {
		return fmt.Errorf("%w: cannot sign in protocol %d, this signet speaks %s", ErrProtocol, v, speaks())
	}
	return nil
}

// replyVersion is the version a host replies in: the request's, when it
// speaks it; its own newest otherwise (a refusal of a request it could
// not parse, or of a version it does not speak).
func replyVersion(req *Request) int {
	if req != nil && checkRequestVersion(req.Version) == nil {
		return req.Version
	}
	return ProtocolVersion
}

// newerVersion reports whether a payload says it is of a protocol newer
// than this release's. It decodes only "v".
func newerVersion(payload []byte) bool {
	var p struct {
		V int `json:"v"`
	}
	return json.Unmarshal(payload, &p) == nil && p.V > ProtocolVersion
}
