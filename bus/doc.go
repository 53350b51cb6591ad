// Package bus is signet's protocol: the signed request and reply, the
// subjects they travel on, the responder loop that runs on every host and
// the client the operator's CLI uses.
//
// # Envelope
//
// Every message is a frame (see internal/wire): magic "SGNT", a version
// byte, a kind byte ('Q' request, 'R' reply), the payload and an OpenSSH
// SSHSIG signature over exactly the payload bytes. Requests are signed under
// the namespace "signet-request@v1" with the operator's ed25519 key; replies
// under "signet-reply@v1" with the responder's host key. A recorded request
// payload and its armored signature verify with stock
// `ssh-keygen -Y verify -n signet-request@v1`.
//
// # Request
//
// The payload is JSON with the fields of Request: protocol version, a random
// 128-bit id, the sender (claimed user and key fingerprint), collective,
// agent, action, parameters, filter, direct targets, creation time (Unix ms)
// and TTL (seconds). Unknown fields are refused: a host never ignores part
// of a signed command it does not understand.
//
// # Checks on the host
//
// In order: size limit; frame and payload parse; for a broadcast, the
// addressing (a cheap look for the host's quoted identity in the frame
// bytes, then the exact check of Targets and of the filter after parsing):
// a broadcast that does not name this host, or whose filter does not match
// it, is dropped silently BEFORE any signature verify (changing those
// fields breaks the signature, so only a forged copy can be dropped this
// way); signature namespace; key trusted (authorized_keys); signature
// valid; claimed fingerprint matches the key; protocol version; collective;
// TTL within the host's maximum; not dated in the future beyond the clock
// skew; not expired; not signed before the responder started (the replay
// cache is in memory, so a restart cannot reopen the replay window); a
// direct request names this host; the filter matches; then policy and
// parameter validation (the handler's Authorizer); only then the replay
// cache. The cache admits only requests that will run, is bounded, gives
// one signing key at most a share of it, and keeps entries until the
// request could no longer pass the freshness check.
//
// A copy of an admitted request (same id, same frame digest) never runs
// again: if it finished, the responder re-sends its signed reply frame
// verbatim (kept within a memory bound; audited as "duplicate"); while it
// runs, the copy is refused with code in_progress. The same id with other
// bytes is refused as a replay.
//
// These checks run in the subscription's callback; only a request admitted
// to run gets a goroutine, which waits for an action slot, writes the
// "started" audit record (and refuses with audit_unavailable if it cannot),
// runs the handler, signs the reply and writes the result record.
//
// Every refusal to an authenticated key is answered with a signed reply
// carrying a code and a reason, and audited. Messages that do not
// authenticate (not a frame, oversized, malformed or bad signature,
// untrusted key) are rate-limited: per window only the first few are
// audited, logged and answered with a signed refusal; the rest are counted
// in one "suppressed" audit record and one log line per window. Copies of a
// signed frame (anyone on the broker can republish one) count the same way
// after the first refusal or answer of that frame. Bytes that are not a
// frame are never answered.
//
// # Subjects
//
//	COLLECTIVE.agent.AGENT     broadcast to every host with AGENT
//	COLLECTIVE.node.IDENTITY   direct to one host
//	_INBOX.*                   the client's private reply inbox
//
// # Registry
//
// Responders publish a Registration in the JetStream key-value bucket
// signet_registry_COLLECTIVE, refreshed well within the bucket's TTL and
// deleted on clean shutdown. Clients use it to know which hosts must answer,
// so a request finishes when the last expected host has replied (plus a
// short linger, twice the fleet's answer time within 20-200ms, for hosts
// missing from the registry); hosts that did not are reported by name as
// "no response". Without a registry the
// client discovers hosts with a broadcast rpcutil ping.
package bus
