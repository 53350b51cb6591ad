package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
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
// versions. So hosts may be upgraded before clients. A client upgraded
// first negotiates: a host of the previous release refuses its request for
// its version, in a reply signed by the host and bound to the request, and
// the client sends the request again to that host in the host's version
// (retryOlder). ClientConfig.Protocol pins the older version instead, and
// saves that round trip.
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

// speaksPrevious reports whether r is a host's refusal of a request in
// protocol v because it speaks only v-1.
func speaksPrevious(r Result, v int) bool {
	return r.Status == ResultRefused && r.Reply != nil && r.Reply.Code == CodeVersion && r.Reply.Version == v-1 && v-1 >= MinProtocolVersion
}

// holdOlder keeps q.OnResult from reporting the refusals retryOlder will
// replace: the host is reported once, with the answer to the retry.
func (c *Client) holdOlder(q Query) Query {
	if q.OnResult == nil {
		return q
	}
	v, report := c.signIn(q), q.OnResult
	q.OnResult = func(r Result) {
		if !speaksPrevious(r, v) {
			report(r)
		}
	}
	return q
}

// signIn is the version a query's requests are signed in.
func (c *Client) signIn(q Query) int {
	if q.protocol != 0 {
		return q.protocol
	}
	return c.cfg.Protocol
}

// retryOlder sends q again, in the previous protocol, to the hosts among
// out.Results[from:] that refused it for its version and speak that
// protocol (hosts of the previous release), and puts their new results in
// place of the refusals. Such a refusal is signed by the host's key and
// bound to the request's frame, so only the host can cause the retry.
func (c *Client) retryOlder(ctx context.Context, q Query, out *Outcome, from int, start time.Time) error {
	v := c.signIn(q)
	if v <= MinProtocolVersion {
		return nil
	}
	var older []string
	kept := append([]Result(nil), out.Results[:from]...)
	for _, r := range out.Results[from:] {
		if speaksPrevious(r, v) {
			older = append(older, r.Identity)
			continue
		}
		kept = append(kept, r)
	}
	if len(older) == 0 {
		return nil
	}
	c.log.Debug("hosts speak the previous protocol; sending again in it", "protocol", v-1, "hosts", older)
	out.Results = kept
	q.protocol = v - 1
	return c.send(ctx, q, older, false, out, start)
}
